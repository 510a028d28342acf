"""Truss's test_custom_openai_endpoints: one counter per method; no chat_completions (404)."""


class Model:
    def load(self):
        self._counts = {"predict": 0, "completions": 0, "embeddings": 0, "messages": 0, "responses": 0}

    def _add(self, name, inputs):
        self._counts[name] += inputs["increment"]
        return self._counts[name]

    async def predict(self, inputs) -> int:
        return self._add("predict", inputs)

    async def completions(self, inputs) -> int:
        return self._add("completions", inputs)

    async def embeddings(self, inputs) -> int:
        return self._add("embeddings", inputs)

    async def messages(self, inputs) -> int:
        return self._add("messages", inputs)

    async def responses(self, inputs) -> int:
        return self._add("responses", inputs)
