"""faust's aiokafka transport with the consumer's fetch wait taken from the broker URL.

faust builds its consumer with fetch_max_wait_ms=1500 and offers no setting for it. Apache Kafka
answers a fetch as soon as a record arrives, so there the figure only bounds idle fetches; Tansu
(the local broker) answers at the end of the wait even when a record landed meanwhile, and every
episode then waited about 0.7 s before the service saw it. faust_app names this transport by the
"gaelp-kafka" scheme (an entry point of the faust.transports group, pyproject.toml) and passes
settings.kafka.fetch_max_wait_ms as the broker URL's `fetch_max_wait_ms` query parameter.
"""

from __future__ import annotations

from typing import ClassVar

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import ConsumerT

SCHEME = "gaelp-kafka"
FETCH_MAX_WAIT_PARAMETER = "fetch_max_wait_ms"


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait = self.app.conf.broker_consumer[0].query.get(FETCH_MAX_WAIT_PARAMETER)
        if wait is not None:
            # Read by start(), when aiokafka builds its fetcher: the consumer is not started yet.
            consumer._fetch_max_wait_ms = int(wait)
        return consumer


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer: ClassVar[type[ConsumerT]] = Consumer
