"""stream_doors with async generators (on the event loop): the same inputs, the same chunks.

See tests/bundles/stream_doors.
"""

from doors import achunks, event


class Model:
    async def predict(self, model_input):
        async for chunk in achunks(model_input):
            yield chunk

    async def chat_completions(self, model_input):
        async for content in achunks(model_input):
            yield event(content)
        yield "data: [DONE]\n\n"
