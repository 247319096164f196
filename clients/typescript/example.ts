// Calling Switchboard with the official openai npm package: only baseURL and the key change.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.SWITCHBOARD_URL ?? "http://127.0.0.1:8000/v1",
  apiKey: process.env.SWITCHBOARD_API_KEY ?? "sbk_…",
  maxRetries: 0,
});

const model = process.env.SWITCHBOARD_MODEL ?? "gpt-4o-mini";

const reply = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "Say hello from TypeScript" }],
});
console.log(JSON.stringify({ content: reply.choices[0].message.content, usage: reply.usage }));

const stream = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "Say hello from TypeScript" }],
  stream: true,
});
let streamed = "";
for await (const chunk of stream) {
  streamed += chunk.choices[0]?.delta?.content ?? "";
}
console.log(JSON.stringify({ streamed }));
