"""Native provider batches: a batch whose every line names one model that opts in
(`batch: native` in models.yaml) is submitted whole to that provider's batch API at
half price, followed by the batch function's schedule, and its results written back
in OpenAI's output format (docs/batch.md, "Native provider batches")."""
