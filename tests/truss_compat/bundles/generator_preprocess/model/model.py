"""An async generator preprocess hands predict the generator (Truss's test_preprocess_async_generator)."""
from typing import AsyncGenerator, List


class Model:
    async def preprocess(self, inputs) -> AsyncGenerator[str, None]:
        for num in inputs["nums"]:
            yield num

    async def predict(self, nums: AsyncGenerator[str, None]) -> List[str]:
        return [num async for num in nums]
