"""An OpenAI-compatible model: chat (streaming or not) and completions, answering what the official
client parses. "sleep" in a message holds the predict slot that long, so a test can see the lock."""
import json
import time


def _reply(messages):
    return "echo: " + " ".join(m["content"] for m in messages if m["role"] == "user")


class Model:
    def predict(self, model_input):
        return {"predicted": model_input}

    def chat_completions(self, inputs):
        time.sleep(float(inputs.get("metadata", {}).get("sleep", 0)))
        text = _reply(inputs["messages"])
        if not inputs.get("stream"):
            return {"id": "chat-1", "object": "chat.completion", "created": 1, "model": inputs["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}]}
        return self._stream(inputs["model"], text)

    def _stream(self, model, text):
        for word in text.split(" "):
            chunk = {"id": "chat-1", "object": "chat.completion.chunk", "created": 1, "model": model,
                     "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]}
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"

    async def completions(self, inputs):
        return {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": inputs["model"],
                "choices": [{"index": 0, "text": inputs["prompt"][::-1], "finish_reason": "stop",
                             "logprobs": None}]}
