"""One router per resource under /api/v1, and the compatible APIs (OpenAI Images, A1111)."""
