"""Adapters between the engine and the outside: input files and their validation (`files`), label files
(`labels`), listing images (`listing`), loading encoders and models from disk (`artifacts`), the embedded
batch runner (`batch`: a file in, decisions out, through the same core as the service), and Kafka (`kafka`,
`group`) and the event format (`events`), and the candidate index in Milvus (`milvus_index`, handed to the
engine through its `VectorIndex` seam).

May import the engine, the encoders, the config and (for the batch runner's fit) `consumer.learn`; never the
service, the API or the CLI.
"""
