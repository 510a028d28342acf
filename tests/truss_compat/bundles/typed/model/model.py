"""pydantic input and output: validated (400 naming the field), serialized, published as a schema."""
from pydantic import BaseModel, Field


class Prompt(BaseModel):
    text: str
    repeat: int = Field(default=1, ge=1, le=5)


class Reply(BaseModel):
    text: str
    length: int


class Model:
    def predict(self, prompt: Prompt) -> Reply:
        assert isinstance(prompt, Prompt)
        out = " ".join([prompt.text] * prompt.repeat)
        return Reply(text=out, length=len(out))
