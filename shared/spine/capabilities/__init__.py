"""GenAI Spine's task endpoints (summarize, extract, classify, rewrite, infer-title,
generate-commit, translate): each a seeded prompt run through the one pipeline, with
a typed, checked answer."""
