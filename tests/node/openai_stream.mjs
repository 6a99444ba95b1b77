// Drives sfumato's OpenAI-compatible door with the official openai Node SDK, streaming:
// `node openai_stream.mjs <base_url> <api_key>` prints one JSON line per event it yields.
import OpenAI, { toFile } from "openai";

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30000 });

function describe(call, event) {
  return JSON.stringify({ call, type: event.type, index: event.partial_image_index ?? null,
    bytes: Buffer.from(event.b64_json ?? "", "base64").length, format: event.output_format ?? null,
    size: event.size ?? null, usage: event.usage ? true : false });
}

const generated = await client.images.generate({ model: "gpt-image-1.5", prompt: "a fox in snow",
  stream: true, partial_images: 2, size: "1536x1024" });
for await (const event of generated) console.log(describe("generate", event));

const png = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==", "base64");
const edited = await client.images.edit({ model: "gpt-image-1.5", prompt: "at night",
  image: await toFile(png, "in.png", { type: "image/png" }), stream: true, partial_images: 1 });
for await (const event of edited) console.log(describe("edit", event));
