"""Multi-model review (POST /v1/reviews): reviewers, a judge and a reviser, each a
seeded prompt run through the capabilities' machinery and the one pipeline."""
