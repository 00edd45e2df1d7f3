// Read an OpenAI-style event stream (`data: {json}` events, `event: error`, then
// `data: [DONE]`) from a fetch response, one parsed event at a time.

export interface StreamEvent {
  event: string;
  data: unknown;
}

export async function* readEvents(response: Response): AsyncGenerator<StreamEvent> {
  if (!response.body) return;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let boundary = buffer.indexOf("\n\n");
    while (boundary >= 0) {
      const block = buffer.slice(0, boundary);
      buffer = buffer.slice(boundary + 2);
      boundary = buffer.indexOf("\n\n");
      let event = "message";
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      const text = data.join("\n");
      if (text === "[DONE]") return;
      if (!text) continue;
      try {
        yield { event, data: JSON.parse(text) };
      } catch {
        yield { event: "error", data: { error: { message: "The stream sent a broken event." } } };
      }
    }
  }
}
