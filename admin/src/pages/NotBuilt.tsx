const WHAT: Record<string, string> = {
  Capabilities: "a form per capability (summarize, extract, classify, rewrite, title, commit) with its structured answer",
  Reviews: "starting a review and watching its steps",
  Pipelines: "starting a pipeline run and watching its steps",
  Batches: "uploading a batch file, watching its progress and downloading the results",
};

export default function NotBuilt({ title }: { title: string }) {
  return (
    <section aria-labelledby="not-built-title">
      <h1 id="not-built-title">{title}</h1>
      <p data-testid="not-built">
        Not built yet: the gateway has no {title.toLowerCase()} routes. This page will offer {WHAT[title] ?? "its feature"} when they land.
      </p>
    </section>
  );
}
