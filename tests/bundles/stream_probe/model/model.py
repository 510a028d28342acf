"""A streaming predict that logs when its generator starts and ends.

In-process tests pass ``{"id": ..., "log": list, "chunks": iterable}``: the generator yields
what ``chunks`` yields, so a test decides when it blocks and when it ends.
"""


class Model:
    def predict(self, model_input):
        log = model_input["log"]
        log.append(("start", model_input["id"]))
        try:
            yield from model_input["chunks"]
        finally:
            log.append(("end", model_input["id"]))
