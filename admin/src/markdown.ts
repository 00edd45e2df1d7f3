import MarkdownIt from "markdown-it";

// Model output is untrusted. `html: false` makes markdown-it escape every raw HTML
// tag (a `<script>` in an answer is shown as text), and its link validator refuses
// javascript:, vbscript:, file: and data: URLs. The page's CSP (script-src 'self')
// is the second line of defence.
const md = new MarkdownIt({ html: false, linkify: true, breaks: false });

const defaultLink =
  md.renderer.rules.link_open ?? ((tokens, idx, options, _env, self) => self.renderToken(tokens, idx, options));
md.renderer.rules.link_open = (tokens, idx, options, env, self) => {
  tokens[idx].attrSet("rel", "noopener noreferrer nofollow");
  tokens[idx].attrSet("target", "_blank");
  return defaultLink(tokens, idx, options, env, self);
};

export function renderMarkdown(text: string): string {
  return md.render(text);
}
