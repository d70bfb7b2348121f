// The ragserve playground: one conversation over the public API, POST ../v1/chat/completions with
// stream: true (server-sent events). The whole conversation is sent each turn, as any OpenAI client does;
// the server derives the retrieval query from it. The API key is read from its input at each request and
// never stored (no web storage, no cookies: fetch sends none). Everything the server returns goes into the
// page as text (textContent), never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const CHAT_URL = new URL("../v1/chat/completions", document.baseURI).href; // relative: any route prefix
  const TIMINGS = [
    ["embed_ms", "embed"],
    ["search_ms", "search"],
    ["rerank_ms", "rerank"],
    ["prompt_ms", "prompt"],
    ["ttft_ms", "first token"],
    ["generate_ms", "generate"],
    ["total_ms", "total"],
  ];
  const CITATION = /\[(\d+(?:\s*,\s*\d+)*)\]/g; // [2] or [1, 3]

  let history = []; // messages of the turns that were answered
  let turns = []; // {index, box, answer, meta, sources, grounded}
  let busy = false;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function requestHeaders() {
    const headers = { "Content-Type": "application/json", Accept: "text/event-stream" };
    const key = $("api-key").value.trim();
    if (key) headers.Authorization = "Bearer " + key;
    return headers;
  }

  async function errorMessage(res) {
    try {
      const body = await res.json();
      return (body.error && body.error.message) || res.statusText;
    } catch {
      return res.statusText || "request failed";
    }
  }

  // Server-sent events of a fetch response: each `data:` payload parsed, until [DONE].
  async function* events(res) {
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).trimStart())
          .join("\n");
        if (data === "[DONE]") return;
        if (data) yield JSON.parse(data);
      }
    }
  }

  function addTurn(question) {
    const turn = { index: turns.length, sources: [], grounded: true };
    turn.box = el("article", "turn");
    turn.box.dataset.state = "streaming";
    turn.box.setAttribute("aria-label", `Turn ${turn.index + 1}`);
    const user = el("div", "msg user");
    user.append(el("span", "who", "You"), el("p", "text", question));
    const bot = el("div", "msg assistant");
    turn.answer = el("p", "text answer pending");
    turn.meta = el("div", "meta");
    bot.append(el("span", "who", "ragserve"), turn.answer, turn.meta);
    turn.box.append(user, bot);
    $("turns").append(turn.box);
    turns.push(turn);
    turn.box.scrollIntoView({ block: "end" });
    return turn;
  }

  function citeLink(turn, n, attributed) {
    const link = el("a", attributed ? "cite attributed" : "cite", `[${n}]`);
    link.href = `#source-${n}`;
    link.setAttribute("aria-label", attributed ? `source ${n} (matched after generation)` : `source ${n}`);
    if (attributed) link.title = "The sentence's words are found in this source (matched after generation)";
    link.addEventListener("click", (event) => {
      event.preventDefault();
      showSources(turn, n);
    });
    return link;
  }

  // Text with the model's own [n] turned into links to source n where n is one of the turn's sources.
  function appendMarked(node, turn, text) {
    let last = 0;
    for (const match of text.matchAll(CITATION)) {
      node.append(text.slice(last, match.index));
      const numbers = match[1].split(",").map((s) => parseInt(s, 10));
      if (numbers.every((n) => n >= 1 && n <= turn.sources.length)) {
        numbers.forEach((n) => node.append(citeLink(turn, n, false)));
      } else {
        node.append(match[0]);
      }
      last = match.index + match[0].length;
    }
    node.append(text.slice(last));
  }

  // The answer; once it is complete, each sentence the server attributed to a source (the model wrote no
  // mark there) ends with a link to it. Spans index the streamed text, which is `text`.
  function renderAnswer(turn, text, citations) {
    const node = turn.answer;
    node.replaceChildren();
    const attributed = (citations || [])
      .filter((c) => c.by === "attributed" && c.end <= text.length)
      .sort((a, b) => a.end - b.end);
    let last = 0;
    for (const c of attributed) {
      appendMarked(node, turn, text.slice(last, c.end));
      c.sources
        .filter((n) => n >= 1 && n <= turn.sources.length)
        .forEach((n) => node.append(citeLink(turn, n, true)));
      last = c.end;
    }
    appendMarked(node, turn, text.slice(last));
  }

  function showSources(turn, highlight) {
    const list = $("sources");
    list.replaceChildren();
    $("sources-turn").textContent =
      `For turn ${turn.index + 1}` + (turn.grounded ? "" : ": none relevant enough to answer from");
    turn.sources.forEach((source, i) => {
      const item = el("li", "source");
      item.id = `source-${i + 1}`;
      item.tabIndex = -1;
      const head = el("div", "source-head");
      head.append(
        el("span", "source-n", `[${i + 1}]`),
        el("span", "source-title", source.title || source.source),
        el("span", "score", `score ${Number(source.score).toFixed(3)}`),
      );
      const where = source.source + (source.chunk_index !== undefined ? ` · chunk ${source.chunk_index}` : "");
      item.append(head, el("div", "source-path", where));
      if (source.chunk) item.append(el("blockquote", "chunk", source.chunk));
      list.append(item);
    });
    const target = highlight && $(`source-${highlight}`);
    if (target) {
      target.classList.add("highlight");
      target.scrollIntoView({ block: "nearest" });
      target.focus({ preventScroll: true });
    }
  }

  function showRetrieval(turn, chunk) {
    if (!chunk.grounded && chunk.grounded !== undefined) {
      turn.grounded = false;
      turn.box.classList.add("ungrounded");
      turn.meta.append(el("span", "badge not-covered", "not covered by the documents"));
    }
    if (chunk.retrieval_query) {
      const line = el("p", "retrieval");
      line.append(el("span", "label", "Retrieval query: "), el("q", "", chunk.retrieval_query));
      const how = [chunk.retrieval_method, chunk.retrieval_fallback && `fell back: ${chunk.retrieval_fallback}`];
      if (chunk.retrieval_method) line.append(` (${how.filter(Boolean).join("; ")})`);
      turn.meta.append(line);
    }
  }

  function showTimings(turn, timings, usage) {
    const list = el("ul", "timings");
    list.setAttribute("aria-label", "Timings");
    const known = new Set(TIMINGS.map(([key]) => key));
    const shown = TIMINGS.filter(([key]) => key in timings).concat(
      Object.keys(timings)
        .filter((key) => !known.has(key) && key.endsWith("_ms"))
        .map((key) => [key, key.slice(0, -3).replaceAll("_", " ")]),
    );
    for (const [key, name] of shown) {
      list.append(el("li", "", `${name} ${Number(timings[key]).toFixed(0)} ms`));
    }
    if (usage) list.append(el("li", "", `tokens ${usage.prompt_tokens} in, ${usage.completion_tokens} out`));
    turn.meta.querySelector(".timings")?.remove();
    turn.meta.append(list);
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = false;
  }

  async function send(question) {
    busy = true;
    $("send").disabled = true;
    $("error").hidden = true;
    const messages = [...history, { role: "user", content: question }];
    const body = { messages, stream: true, stream_options: { include_usage: true } };
    const topK = parseInt($("top-k").value, 10);
    if (topK > 0) body.top_k = topK;
    if ($("rerank").value) body.rerank = $("rerank").value === "true";
    const turn = addTurn(question);
    $("turns").setAttribute("aria-busy", "true"); // read the answer out once, when complete
    let text = "";
    let timings = null;
    try {
      const res = await fetch(CHAT_URL, {
        method: "POST",
        headers: requestHeaders(),
        body: JSON.stringify(body),
        credentials: "omit",
        cache: "no-store",
      });
      if (!res.ok) throw new Error(`${res.status}: ${await errorMessage(res)}`);
      for await (const chunk of events(res)) {
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.sources) {
          turn.sources = chunk.sources;
          showRetrieval(turn, chunk);
          showSources(turn);
        }
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) {
          text += delta.content;
          turn.answer.classList.remove("pending");
          renderAnswer(turn, text);
        }
        if (chunk.citations) renderAnswer(turn, text, chunk.citations);
        if (chunk.timings) timings = chunk.timings;
        if (timings) showTimings(turn, timings, chunk.usage);
      }
      turn.answer.classList.remove("pending");
      turn.box.dataset.state = "done";
      history = [...messages, { role: "assistant", content: text }];
    } catch (err) {
      // Not part of the conversation: the question goes back to the box, to send again.
      turn.box.remove();
      turns = turns.filter((t) => t !== turn);
      if (!$("question").value) $("question").value = question;
      showError(`Request failed — ${err.message}`);
    } finally {
      $("turns").setAttribute("aria-busy", "false");
      busy = false;
      $("send").disabled = false;
      $("question").focus();
    }
  }

  $("ask").addEventListener("submit", (event) => {
    event.preventDefault();
    const question = $("question").value.trim();
    if (!question || busy) return;
    $("question").value = "";
    send(question);
  });

  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("ask").requestSubmit();
    }
  });

  $("new-chat").addEventListener("click", () => {
    history = [];
    turns = [];
    $("turns").replaceChildren();
    $("sources").replaceChildren();
    $("sources-turn").textContent = "Ask a question to see what the answer is built from.";
    $("error").hidden = true;
    $("question").focus();
  });
})();
