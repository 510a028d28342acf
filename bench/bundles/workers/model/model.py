"""CPU-bound pure Python: predict sums the squares of range(n) in a loop, holding the GIL.

n = 20 000 (the case's payload) is about 2 ms of one core here. One process serves at most one
predict at a time whatever predict_concurrency says; `kingpost serve --workers 2` runs two.
"""


class Model:
    def __init__(self, **kwargs):
        pass

    def load(self):
        pass

    def predict(self, model_input):
        n = int(model_input["n"])
        total = 0
        for i in range(n):
            total += i * i
        return {"n": n, "sum": total}
