"""Sync generators behind Truss's model surface: predict and chat_completions (so not a plain bundle:
:predict and /v1/chat/completions go through the surface's routes, on predict threads).

Input: predict's or the chat completion's body (extra fields beside model and messages), as in
tests/bundles/stream_doors_common/doors.py. chat_completions yields each chunk as an OpenAI
chat.completion.chunk SSE event, then "data: [DONE]".
"""

from doors import chunks, event


class Model:
    def predict(self, model_input):
        yield from chunks(model_input)

    def chat_completions(self, model_input):
        for content in chunks(model_input):
            yield event(content)
        yield "data: [DONE]\n\n"
