"""A sync generator predict for every front door's stream test (a plain bundle: the hot path).

Input: as in tests/bundles/stream_doors_common/doors.py.
"""

from doors import chunks


class Model:
    def predict(self, model_input):
        yield from chunks(model_input)
