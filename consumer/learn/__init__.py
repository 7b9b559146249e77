"""Fitting models to a user's data: Fellegi-Sunter weights without labels (`fellegi_sunter`, `fs_fit`,
`unsupervised`), supervised training on a truth file (`train`), and active labelling (`labelling`, the pure
model and question choice; `label_session`, the pairs of one engine run, the oracle and the fit).

May import the engine, the encoders, `consumer.io` (files, label files, the batch runner) and the config;
never the service, the API or the CLI. A fitted model is an ordinary `consumer.engine.fusion.LearnedModel`.
"""
