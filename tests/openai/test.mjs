// test.mjs — the official OpenAI Node SDK (pinned in package.json) against a running `tower serve`.
// tests/serve_openai_test.py starts the server and passes: OPENAI_BASE_URL, EXPECT_TEXT (greedy answer
// to "Hello!" in 16 tokens), EXPECT_IMAGE_TEXT (to the fixture image + "Describe the image."), IMAGE_URL.
// Prints "ok ..." / "FAIL ..." lines; the Python side counts them.
import OpenAI from 'openai';

const client = new OpenAI({ baseURL: process.env.OPENAI_BASE_URL, apiKey: 'test-key', maxRetries: 0 });
const say = (good, desc, detail) => console.log(`${good ? 'ok  ' : 'FAIL'} ${desc}${good || detail === undefined ? '' : ' :: ' + JSON.stringify(detail).slice(0, 400)}`);

async function main() {
  const hello = [{ role: 'user', content: 'Hello!' }];
  const r = await client.chat.completions.create({ model: 'tiny', messages: hello, max_tokens: 16, temperature: 0 });
  say(r.choices[0].message.content === process.env.EXPECT_TEXT, 'node sdk: chat.completions.create greedy text', r.choices[0].message.content);
  say(r.usage.prompt_tokens === 11 && r.usage.completion_tokens === 16, 'node sdk: usage', r.usage);

  const stream = await client.chat.completions.create({
    model: 'tiny', messages: hello, max_tokens: 16, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let text = '', usage = null, finish = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) { text += c.delta?.content ?? ''; if (c.finish_reason) finish = c.finish_reason; }
  }
  say(text === process.env.EXPECT_TEXT, 'node sdk: streamed deltas add up to the answer', text);
  say(finish === 'length' && usage && usage.completion_tokens === 16, 'node sdk: stream finish_reason and usage chunk', { finish, usage });

  const img = await client.chat.completions.create({
    model: 'tiny', max_tokens: 16, temperature: 0,
    messages: [{ role: 'user', content: [
      { type: 'image_url', image_url: { url: process.env.IMAGE_URL } },
      { type: 'text', text: 'Describe the image.' }] }] });
  say(img.choices[0].message.content === process.env.EXPECT_IMAGE_TEXT, 'node sdk: an image_url part', img.choices[0].message.content);

  const lp = await client.chat.completions.create({ model: 'tiny', messages: hello, max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 2 });
  const content = lp.choices[0].logprobs?.content ?? [];
  say(content.length === 8 && content.every(e => e.top_logprobs.length === 2 && e.logprob <= 0 && e.top_logprobs[0].token === e.token),
      'node sdk: logprobs with top_logprobs', content.slice(0, 2));

  const comp = await client.completions.create({ model: 'tiny', prompt: 'The capital of Portugal is', max_tokens: 4, temperature: 0, echo: true, logprobs: 1 });
  const tl = comp.choices[0].logprobs.token_logprobs;
  say(tl[0] === null && tl.length === comp.usage.prompt_tokens + comp.usage.completion_tokens && comp.choices[0].text.startsWith('The capital of Portugal is'),
      'node sdk: completions with echo + logprobs of the prompt', { tl: tl.slice(0, 3), text: comp.choices[0].text });

  const models = await client.models.list();
  say(models.data.length === 1 && models.data[0].input_modalities.includes('image'), 'node sdk: models.list', models.data);

  try {
    await client.chat.completions.create({ model: 'tiny', messages: hello, n: 2 });
    say(false, 'node sdk: n = 2 is refused');
  } catch (e) {
    say(e instanceof OpenAI.BadRequestError && e.status === 400 && /'n'/.test(e.message), 'node sdk: n = 2 raises BadRequestError naming the field', e.message);
  }
}

main().catch(e => { say(false, 'node sdk: unexpected exception', String(e && e.stack || e)); process.exitCode = 1; });
