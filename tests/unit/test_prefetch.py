import pytest

from shark.data.prefetch import prefetch


def test_prefetch_preserves_order_and_items():
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))
    assert list(prefetch(iter(range(5)), depth=0)) == list(range(5))


def test_prefetch_reraises_producer_error_in_consumer():
    def gen():
        yield 1
        raise RuntimeError("boom at item 2")

    it = prefetch(gen(), depth=2)
    assert next(it) == 1
    with pytest.raises(RuntimeError, match="boom"):
        next(it)


def test_prefetch_stops_producer_when_consumer_leaves_early():
    produced = []

    def gen():
        for i in range(10_000):
            produced.append(i)
            yield i

    it = prefetch(gen(), depth=2)
    assert next(it) == 0
    it.close()
    assert len(produced) < 10
