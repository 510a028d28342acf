"""A plain sync predict that returns its stream instead of being a generator (Truss's examples do both).

Input: stream_doors_plain's (tests/bundles/stream_doors_common/doors.py); predict returns the
generator of those chunks, or with "response": true a Starlette StreamingResponse of them
(text/plain). {"where": true} answers the name of the thread predict ran on, at once: a test sees
when predict runs on the event loop (kingpost calls a predict that fast there).
"""

import threading

from doors import chunks


class Model:
    def predict(self, model_input):
        if model_input.get("where"):
            return threading.current_thread().name
        if model_input.get("response"):
            from starlette.responses import StreamingResponse

            return StreamingResponse(chunks(model_input), media_type="text/plain")
        return chunks(model_input)
