from aiokafka.partitioner import DefaultPartitioner

from leadpulse.streams.partitioning import home_partition


def test_home_partition_agrees_with_the_kafka_default_partitioner():
    partitions = list(range(8))
    for key in (b"c-1", b"anon-0000042", "contact-é".encode()):
        assert home_partition(key, 8) == DefaultPartitioner()(key, partitions, partitions)
