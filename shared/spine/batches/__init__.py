"""OpenAI's Files, Uploads and Batch APIs on Spine's one request pipeline."""
