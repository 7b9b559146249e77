"""Product-title normalisation and the attributes that tell similar titles apart (consumer/engine/titles.py)."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.encoders.title import TitleEncoder
from consumer.engine.records import Record
from consumer.engine.titles import parse_price, parse_title


def _encoded(titles: list[str]) -> tuple[TitleEncoder, dict[str, np.ndarray]]:
    """A title encoder (a constant stand-in for the text model) and its columns for `titles`."""

    class Text:
        dim = 4

        def encode(self, texts: list[str]) -> np.ndarray:
            return np.ones((len(texts), 4), np.float32)

    enc = TitleEncoder(Text(), "k")
    return enc, enc.encode([Record(f"r{i}", "", "", (), "", "", (), (("title", t),)) for i, t in enumerate(titles)])


@pytest.mark.parametrize(("a", "b"), [
    ("Acme AquaPure Water 0.5 L, 6-Pack", "ACME aquapure water 500ml (pack of 6)"),
    ("Portable SSD 1TB", "portable ssd 1000 GB"),
    ("Nike Air Zoom UK 9 Black", "nike air zoom size 9 black"),
    ("Sony WH-1000XM4 Silver", "SONY wh1000xm4 silver"),
    ("Tablet (2nd generation) 64GB", "tablet gen 2 64 gb"),
    ("Cotton Tee Medium Gray", "cotton tee size M grey"),
    ("Coffee Beans 1kg", "coffee beans 1000g"),
    ("Juice 33cl", "juice 330 ml"),
])
def test_equivalent_titles_normalise_alike(a: str, b: str) -> None:
    ta, tb = parse_title(a), parse_title(b)
    assert ta.attributes == tb.attributes
    assert set(ta.core) == set(tb.core)


@pytest.mark.parametrize(("a", "b", "kind"), [
    ("Phone X 128GB Black", "Phone X 256GB Black", "cap"),
    ("Water 500ml", "Water 1L", "vol"),
    ("Runner UK 9", "Runner size 10", "size"),
    ("Phone X 128GB Black", "Phone X 128GB Blue", "colour"),
    ("Buds Gen 2", "Buds 3rd generation", "gen"),
    ("Galaxy S23", "Galaxy S24", "model"),
    ("Water 6-pack", "Water pack of 12", "pack"),
    ("Fernseher 50 Zoll", "Fernseher 55 Zoll", "screen"),
    ("Speicherkarte 64G", "Speicherkarte 128GB", "cap"),
    ("Vista 5S Gaming Mouse Lite Green", "Vista 5S Gaming Mouse Pro Green", "tier"),
])
def test_differing_attributes_are_found(a: str, b: str, kind: str) -> None:
    ta, tb = parse_title(a), parse_title(b)
    assert ta.attributes[kind] != tb.attributes[kind]


@pytest.mark.parametrize(("a", "b"), [
    ("USB-Stick 64-GB Schwarz 2er Pack", "USB flash drive 64GB black, pack of 2"),
    ("Clé USB 64 Go noir, lot de 2", "usb stick 64 gb Nero 2 Stück"),
    ("Disque dur 2 To blanc", "hard disk 2TB white"),
    ("Toner Gelb (confezione da 4)", "toner jaune 4 pcs"),
    ("Kopfhörer Weiß Doppelpack", "Auriculares blanco 2-pack"),
    ("Fernseher 55 Zoll", 'Smart TV 55"'),
    ("Téléviseur 55 pouces", "Televisore 55 pollici"),
    ("Televisor 43 pulgadas", "TV 43'' HDMI"),
    ("Grafikkarte 16G GDDR6", "Graphics card 16 GB GDDR6"),
    ("USB-Stick 64GB USB 3.2 G1", "USB flash drive 64 GB USB 3.2 Gen 1"),
])
def test_attributes_read_alike_in_the_languages_and_spellings_shops_use(a: str, b: str) -> None:
    assert parse_title(a).attributes == parse_title(b).attributes


def test_marketing_noise_is_dropped() -> None:
    assert parse_title("NEW Genuine Acme Kettle - Free Shipping").core == ("acme", "kettle")


@pytest.mark.parametrize(("text", "value"), [("1,299.00", 1299.0), ("19,99", 19.99), ("€ 20", 20.0),
                                             ("1.299,50", 1299.5), ("", None), ("free", None), ("0", None)])
def test_prices(text: str, value: float | None) -> None:
    assert parse_price(text) == value


def test_two_suffixes_on_one_stem_are_variants_a_bare_code_stays_ambiguous() -> None:
    """"LRG30357WH" / "LRG30357SS": one model's colour slot, two products (0, as codes that disagree);
    "LRG30357" or "LRG30357W" beside "LRG30357WH" may be the same product written short (0.4, as before)."""
    from consumer.encoders.title import _code_match

    titles = ["Fridge LRG30357WH", "Fridge LRG30357SS", "Fridge LRG30357", "Fridge LRG30357W", "Fridge LRG30357WH"]
    enc, cols = _encoded(titles)

    def match(i: int, j: int) -> float:
        return float(_code_match({k: v[[i]] for k, v in cols.items()}, {k: v[[j]] for k, v in cols.items()})[0])

    assert match(0, 1) == 0.0 and match(1, 0) == 0.0
    assert match(0, 2) == np.float32(0.4) and match(2, 1) == np.float32(0.4) and match(3, 0) == np.float32(0.4)
    assert match(3, 1) == 0.0 and match(0, 4) == 1.0


def test_a_code_inside_another_shops_longer_code_is_near_not_a_conflict() -> None:
    """One shop's "24734" in the other's "TV24734", "967685" in "967685-0403", "SC1A-B" in "SC1A-B1", an
    item number inside a UPC: written differently, not two products (0.4, like a suffix cut short); a code
    that only starts like another ("DCX30" / "DCX31") or two suffixes on one stem still disagree."""
    from consumer.encoders.title import _code_match

    pairs = [("GE Antenna - TV24734", "GE Antenna - 24734"), ("Keyboard - 967685", "Keyboard - 967685-0403"),
             ("Ceiling Mount - SC1A-B", "Ceiling Mount - SC1A-B1"), ("Panasonic SD card SDV02GU1A", "RP-SDV02GU1A"),
             ("Charger - 743840830153", "Nyko Charger - 83015"), ("Dock DCX30", "Dock DCX31"),
             ("Fridge LRG30357WH", "Fridge LRG30357SS")]
    enc, cols = _encoded([t for pair in pairs for t in pair])

    def match(i: int, j: int) -> float:
        return float(_code_match({k: v[[i]] for k, v in cols.items()}, {k: v[[j]] for k, v in cols.items()})[0])

    got = [(match(2 * k, 2 * k + 1), match(2 * k + 1, 2 * k)) for k in range(len(pairs))]
    assert got[:5] == [(np.float32(0.4), np.float32(0.4))] * 5
    assert got[5:] == [(0.0, 0.0)] * 2


@pytest.mark.parametrize(("title", "kind", "value"), [
    ("Galaxy A55 5G 128GB", "cap", ("128",)),  # "5G" is the network, not five grams
    ("EliteBook 840 G9 1.4 kg", "mass", ("1400",)),  # "840 G9" is a model, not 840 grams
    ("SSD 250GB up to 560 MB/s", "cap", ("256",)),  # a rate is not a capacity (250 GB is the binary 256)
    ("Laptop 16GB RAM 512GB SSD", "cap", ("512",)),  # working memory is a kind of its own
    ("Laptop 16GB RAM 512GB SSD", "ram", ("16",)),
    ("TN 243 pack of 4 toner", "pack", ("4",)),  # the model number is not the count
    ("Attaché 4 pack of 2", "pack", ("2",)),
])
def test_attributes_are_not_read_from_what_only_looks_like_them(title: str, kind: str, value: tuple[str, ...]) -> None:
    assert parse_title(title).attributes[kind] == value


@pytest.mark.parametrize("title", ["USB stick 16GB up to 150MB/s", "NVMe SSD 1TB 7000 MB/s read",
                                   "Router AX 1200 Mbps", "Switch 2.5 Gbit/s"])
def test_a_data_rate_is_no_model_code_number_or_capacity(title: str) -> None:
    from consumer.engine.titles import product_codes

    attrs = parse_title(title).attributes
    assert "model" not in attrs and "num" not in attrs and product_codes(title) == ()
    assert attrs.get("cap", ("16",)) in (("16",), ("1024",))


def test_a_specs_version_is_not_two_numbers_and_a_programs_version_stays_one() -> None:
    for title in ("USB 3.2 Gen 1 stick 64GB", "Graphics card DisplayPort 1.4a HDMI 2.1", "Headset Bluetooth 5.3"):
        attrs = parse_title(title).attributes
        assert "num" not in attrs and "model" not in attrs, title
    assert parse_title("Photoshop 7.0").attributes["num"] == ("7",)
    assert parse_title("Photoshop 6.0 upgrade").attributes["num"] == ("6",)


def test_a_duration_is_no_model_code() -> None:
    """A battery's life, a warranty or a dispatch time is not a product's code, so one shop quoting it does
    not conflict with another shop's part number."""
    for title in ("Headphones WF1000XM5 30h battery", "Batteries AAA 10-year shelf life", "Kopfhörer 24h Versand"):
        assert not {"30h", "10year", "24h"} & set(parse_title(title).attributes.get("model", ())), title
    assert parse_title("Headphones WF1000XM5 30h battery").attributes["model"] == ("wf1000xm5",)


def test_no_attribute_from_a_range_or_a_code() -> None:
    attrs = parse_title("for ages 5 to 10, HP 207X").attributes
    assert "cap" not in attrs and "pack" not in attrs


def test_a_title_stating_more_values_of_a_kind_agrees_with_one_stating_fewer() -> None:
    """A shop that adds "8GB RAM" or a tint beside the colour names the same product; two titles that each
    state a value the other lacks ("128GB" / "256GB") name two."""
    titles = ["Phone X 128GB Black", "Phone X 128GB 8GB RAM Midnight Black", "Phone X 256GB Black",
              "Phone X 128GB 256GB Black"]
    enc, cols = _encoded(titles)

    def agree(i: int, j: int) -> float:
        rows = {k: v[[i]] for k, v in cols.items()}, {k: v[[j]] for k, v in cols.items()}
        return float(enc.compare(*rows)["attr_agree"][0])

    assert agree(0, 1) == 1.0 and agree(1, 0) == 1.0
    assert agree(0, 2) == 0.5  # the capacity differs, the colour agrees
    assert agree(3, 0) == 1.0 and agree(3, 2) == 1.0  # a title naming both capacities contradicts neither


def test_two_colours_editions_or_packs_conflict_whatever_else_agrees() -> None:
    """"Glide 5X Speaker Red" / "Glide 5X Speaker Purple": a kind both state agreeing must not make two colours
    half an agreement; nor a shared colour two pack counts or two editions. A colour one title leaves out is
    still no conflict."""
    titles = ["Glide 5X Portable Speaker Red", "Glide 5X Portable Speaker Purple", "Glide 5X Portable Speaker",
              "Flux Mug Red 2-Pack", "Flux Mug Red 4-Pack", "Nimbus Case Lite White", "Nimbus Case White Pro"]
    enc, cols = _encoded(titles)
    out = enc.compare({k: v[[0, 0, 3, 5]] for k, v in cols.items()}, {k: v[[1, 2, 4, 6]] for k, v in cols.items()})
    got = out["variant_agree"]
    assert got[0] == 0.0 and np.isnan(got[1]) and got[2] == 0.0 and got[3] == 0.0


def test_two_machine_types_beside_a_shared_code_are_two_products() -> None:
    """"ThinkPad X1 Carbon 3444" / "... 3460", both with the CPU code "3667U": the shared code made it the
    0.7 level (a family code beside each variant's own); two numbers of one length, each on one side only,
    fill one slot twice and conflict. A barcode (longer than `MAX_SLOT_DIGITS`) or a number of another length
    beside the shared code is still the 0.7 level."""
    from consumer.encoders.title import _code_match

    titles = ["Lenovo ThinkPad X1 Carbon 3444 - Core i7 3667U", "Lenovo ThinkPad X1 Carbon 3460 - Core i7 3667U",
              "Speaker SRS-X77 027242923492", "Speaker SRS-X77 027242923508",
              "Camera DSC-W800 4548736", "Camera DSC-W800 45487"]
    _, cols = _encoded(titles)

    def match(i: int, j: int) -> float:
        return float(_code_match({k: v[[i]] for k, v in cols.items()}, {k: v[[j]] for k, v in cols.items()})[0])

    assert match(0, 1) == match(1, 0) == 0.0
    assert match(2, 3) == np.float32(0.7)
    assert match(4, 5) == np.float32(0.7)
    assert match(0, 0) == 1.0


def test_two_amounts_of_working_memory_conflict_whatever_else_agrees() -> None:
    """"4 GB RAM" / "8 GB RAM" beside one disk size are two models of one laptop line; two disk sizes
    beside one working memory are not a conflict on their own (files join a laptop's disk sizes)."""
    titles = ["ThinkPad X1 Carbon - 4 GB RAM - 240 GB SSD", "ThinkPad X1 Carbon - 8 GB RAM - 240 GB SSD",
              "ThinkPad X1 Carbon - 8 GB RAM - 128 GB SSD"]
    enc, cols = _encoded(titles)
    out = enc.compare({k: v[[0, 1]] for k, v in cols.items()}, {k: v[[1, 2]] for k, v in cols.items()})
    assert out["variant_agree"][0] == 0.0
    assert out["variant_agree"][1] > 0.0


def test_an_edition_stated_by_one_title_only_is_no_conflict() -> None:
    """"Mouse Lite" / "Mouse Pro" are two editions (a variant conflict); "Mouse Lite" / "Mouse" is not read
    as one: shops leave the edition out as often as the colour."""
    titles = ["Vista 5S Gaming Mouse Lite", "Vista 5S Gaming Mouse Pro", "Vista 5S Gaming Mouse"]
    enc, cols = _encoded(titles)
    out = enc.compare({k: v[[0, 0]] for k, v in cols.items()}, {k: v[[1, 2]] for k, v in cols.items()})
    assert out["variant_agree"][0] == 0.0
    assert np.isnan(out["variant_agree"][1])


def test_a_colour_word_in_the_brand_names_the_maker_not_the_colour() -> None:
    assert "colour" not in parse_title("Casa Verde Orchard Duvet Cover - Sand", "Casa Verde").attributes
    assert parse_title("Casa Verde Orchard Duvet Cover - Navy", "Casa Verde").attributes["colour"] == ("navy",)


@pytest.mark.parametrize(("title", "pack"), [
    ("Pelora Flux 2X Coffee Mug Red 4-Pack", ("4",)),  # "Flux 2X" is the model, the 4-Pack the count
    ("Glide 5X Portable Speaker", None),
    ("4x AA Batteries", ("4",)), ("Toner Black 4x", ("4",)), ("Toner, 4x", ("4",)), ("Batteries x4", ("4",)),
])
def test_a_count_written_nx_between_two_words_is_a_model_name(title: str, pack: tuple[str, ...] | None) -> None:
    assert parse_title(title).attributes.get("pack") == pack


def test_four_digits_are_a_model_number_unless_a_year() -> None:
    from consumer.engine.titles import product_codes

    assert product_codes("Lenovo ThinkPad X1 Carbon 3444 - 14in") == ("3444",)
    assert "2007" not in product_codes("Microsoft Office 2007 Small Business")
    assert "1999" not in product_codes("Encore Print Shop 1999")


@pytest.mark.parametrize(("apart", "joined"), [("Galaxy A25 5000 mAh", "Galaxy A25 5000mAh"),
                                               ("SSD 1000 GB", "SSD 1000GB"), ("HDD 7200 rpm", "HDD 7200rpm"),
                                               ("Kettle 2200 W", "Kettle 2200W")])
def test_a_number_with_its_unit_written_apart_is_a_quantity_as_when_joined(apart: str, joined: str) -> None:
    """"5000 mAh" is a battery's capacity as "5000mAh" is: read as a model number, it made two listings of one
    phone, one naming its battery and one an article number, two products (both coded, none shared)."""
    from consumer.engine.titles import product_codes

    assert product_codes(apart) == product_codes(joined) == ()
    assert product_codes("Toner 12345 black 250 ml") == ("12345",)  # a part number stays one
    assert product_codes("ThinkPad X1 Carbon 3444 14in") == ("3444",)


def test_a_number_joined_to_a_word_is_read_as_written_apart() -> None:
    """"10-Cup", "6-Disc", "7.1-Channel" are counts, as "10 cup" is; "1000N-Incremental" is the "1000" the
    other shop writes apart (Abt-Buy, Amazon-Google: each was a code the other listing lacked)."""
    from consumer.engine.titles import product_codes

    assert product_codes("Cuisinart Brew & Serve 10-Cup Coffee Maker") == product_codes("Coffee Maker 10 Cup") == ()
    assert product_codes("Onkyo 7.1-Channel Home Theater Receiver - TXSR506B") == ("txsr506b",)
    assert product_codes("SonicWall GMS 1000N-Incremental lic upg") == product_codes("upg sgms 1000 incremental") \
        == ("1000",)


def test_w_slash_is_with_not_the_start_of_a_code() -> None:
    """"w/28-135mm Lens" is "with 28-135mm" (a quantity), not a code "w28135mm" the other shop's "28-135mm" lacks;
    a code with a slash inside stays one ("EX55/BLK")."""
    from consumer.engine.titles import product_codes, title_words

    assert product_codes("Canon EOS 50D w/28-135MM IS USM Lens") == product_codes("Canon EOS 50D 28-135mm Lens") == ()
    assert product_codes("Nikon COOLPIX S710 w/3.6x Optical Zoom") == ("s710",)
    assert product_codes("Sony MDR EX55/BLK") == ("ex55blk",)
    assert "remote" in title_words("Samsung DVD player w/remote")


def test_pack_counts_and_shoe_sizes_are_not_model_codes() -> None:
    """"12-Pack" and "UK10" are in many titles of a file: read as a shared model code they made two
    makers' sparkling water or sneakers one product."""
    from consumer.engine.titles import product_codes

    assert product_codes("Sparkling Water 250 ml 12-Pack") == ()
    assert product_codes("Sneakers UK10 white, 4er Pack") == ()
    assert product_codes("Sony WH-1000XM4, 2-Pack") == ("wh1000xm4",)


def test_colour_agree_says_only_whether_both_titles_name_one_colour() -> None:
    """`colour_agree`: 1 where both titles name the same colour, 0 two colours, NaN where either names none
    ("Lite" / "Lite Blue" agree on every variant both state, yet say nothing of the colour)."""
    titles = ["Nimbus Case Lite Blue", "Nimbus Case Lite", "Nimbus Case Lite blue", "Nimbus Case Lite Black"]
    enc, cols = _encoded(titles)
    out = enc.compare({k: v[[0, 0, 0]] for k, v in cols.items()}, {k: v[[1, 2, 3]] for k, v in cols.items()})
    assert np.isnan(out["colour_agree"][0]) and out["variant_agree"][0] == 1.0
    assert out["colour_agree"][1:].tolist() == [1.0, 0.0]


@pytest.mark.parametrize(("title", "part"), [
    ("various - fairies elves angels vol 1 cd2", 2),  # the last part named: the disc within the volume
    ("Wagner - Götterdämmerung CD 2", 2), ("ella fitzgerald - disc 1", 1), ("Rolling Stone New Voices Vol. 39", 39),
    ("Die drei ??? Teil 3", 3), ("Friends Season 4", 4), ("Astérix Tome 12", 12),
    ("MacBook Pro 13", 0), ("Galaxy Book 2", 0), ("Hot Tracks 16 3", 0), ("CD-ROM drive", 0), ("", 0),
])
def test_the_part_of_a_set_a_title_names(title: str, part: int) -> None:
    """Two parts of one set are two products: `set_part` reads the number after a part word, not a bare
    number, a model line ("Book 2") or a word that only contains one ("macbook")."""
    from consumer.engine.titles import set_part

    assert set_part(title) == part
