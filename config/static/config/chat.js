// The demo chat's page script: renders a SessionView into the page. Copy it as a template.
// No framework, no build step: the DOM is updated in place, keyed by message and run id, so
// screen readers hear only what changed (the timeline is an aria-live log).

const STATUS_TEXT = {
  idle: "Not connected",
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  resumed: "Resumed",
  closed: "Disconnected",
  unauthenticated: "Logged out: log in again",
};

export function mountChat(root, SessionsClient) {
  const $ = (selector) => root.ownerDocument.querySelector(selector);
  const params = new URLSearchParams(location.search);
  const client = new SessionsClient({
    token: root.dataset.auth === "token" ? () => fetchToken(root.dataset.tokenUrl) : null,
  });
  client.options.label = deviceLabel(params.get("label"), client.device);
  const view = client.subscribe(root.dataset.session);
  const ui = new ChatView(root, view, $);

  client.addEventListener("status", (event) => showStatus($("#connection"), event.detail.status));
  showStatus($("#connection"), client.status);
  view.addEventListener("change", () => ui.schedule());
  view.addEventListener("error", (event) => ui.error(event.detail.message));
  ui.render();
  wireControls(ui, view, $);
  window.demoChat = { client, view }; // handy in the console
  return { client, view };
}

async function fetchToken(url) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "X-CSRFToken": cookie("csrftoken") },
    credentials: "same-origin",
  });
  if (!response.ok) throw new Error(`token: HTTP ${response.status}`);
  return (await response.json()).token;
}

function cookie(name) {
  const match = document.cookie.match(new RegExp(`(?:^|; )${name}=([^;]*)`));
  return match ? decodeURIComponent(match[1]) : "";
}

/** A label for presence: `?label=` (remembered for this tab), else platform and tab id. */
function deviceLabel(asked, device) {
  try {
    if (asked) sessionStorage.setItem("demo-chat:label", asked);
    asked = asked || sessionStorage.getItem("demo-chat:label");
  } catch (error) {
    // storage disabled: the label lasts for this page only
  }
  return asked || `${platformName()} · tab ${device.slice(-4)}`;
}

function platformName() {
  const platform = navigator.userAgentData?.platform || navigator.platform || "Browser";
  return platform.split(" ")[0];
}

function showStatus(element, status) {
  element.dataset.status = status;
  element.querySelector(".label").textContent = STATUS_TEXT[status] || status;
}

function wireControls(ui, view, $) {
  const composer = $("#composer");
  const text = $("#composer-text");
  const send = async (operation) => {
    let message = text.value.trim();
    if (!message) return;
    if ($("#team").checked && !message.startsWith("/team ")) message = `/team ${message}`;
    ui.error("");
    text.value = "";
    try {
      await operation(message);
    } catch (error) {
      text.value = text.value || message; // not sent (or unknown): give the text back
      ui.error(`Not sent: ${error.message}`);
    }
  };
  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    send((message) => view.sendMessage(message));
  });
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });
  $("#interrupt").addEventListener("click", () => send((message) => view.interrupt(message)));
  $("#stop").addEventListener("click", async () => {
    $("#stop").disabled = true;
    try {
      await view.cancel();
    } catch (error) {
      ui.error(`Could not stop: ${error.message}`);
    } finally {
      $("#stop").disabled = false;
    }
  });
  $("#steer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("#steer-text");
    const run = ui.steerTarget();
    if (!input.value.trim() || !run) return;
    try {
      await view.steer(run.id, input.value.trim());
      input.value = "";
    } catch (error) {
      ui.error(`Could not steer: ${error.message}`);
    }
  });
}

class ChatView {
  constructor(root, view, $) {
    this.root = root;
    this.view = view;
    this.$ = $;
    this.timeline = $("#timeline");
    this.elements = new Map(); // "m:<id>" / "r:<id>" -> element
    this.timer = null;
  }

  schedule() {
    if (this.timer === null) this.timer = setTimeout(() => this.render(), 16);
  }

  error(text) {
    this.$("#composer-error").textContent = text;
  }

  /** The run a steer goes to: the newest running run without a parent (else the newest). */
  steerTarget() {
    const active = this.view.activeRuns().filter((run) => run.status === "running");
    return active.filter((run) => !run.parent).at(-1) || active.at(-1) || null;
  }

  render() {
    this.timer = null;
    const state = this.view.state;
    this.runs = new Map(state.runs.map((run) => [run.id, run]));
    this.children = groupBy(state.runs.filter((run) => run.parent && this.runs.has(run.parent)), (run) => run.parent);
    this.messagesOf = groupBy(state.messages.filter((m) => m.run && m.role !== "user"), (m) => m.run);
    this.place(this.timeline, this.timelineItems(state));
    this.$("#empty").hidden = state.messages.length > 0 || state.runs.length > 0;
    this.renderControls();
    this.renderPresence(state.presence);
    this.renderJobs(state.jobs);
  }

  timelineItems(state) {
    const items = [];
    const placed = new Set();
    const addRun = (runId) => {
      const rootId = this.rootOf(runId);
      if (!placed.has(rootId)) {
        placed.add(rootId);
        items.push(this.runElement(rootId));
      }
    };
    for (const message of state.messages) {
      if (message.role === "user" || !message.run) items.push(this.messageElement(message));
      else addRun(message.run);
    }
    for (const run of state.runs) if (!run.parent || !this.runs.has(run.parent)) addRun(run.id);
    return items;
  }

  rootOf(runId) {
    let run = this.runs.get(runId);
    const seen = new Set();
    while (run && run.parent && this.runs.has(run.parent) && !seen.has(run.id)) {
      seen.add(run.id);
      run = this.runs.get(run.parent);
    }
    return run ? run.id : runId;
  }

  /** Put `items` as the children of `parent`, in order, moving only what moved. */
  place(parent, items) {
    let cursor = parent.firstElementChild;
    for (const item of items) {
      if (item === cursor) cursor = cursor.nextElementSibling;
      else parent.insertBefore(item, cursor);
    }
    while (cursor) {
      const next = cursor.nextElementSibling;
      cursor.remove();
      cursor = next;
    }
  }

  element(key, build) {
    let element = this.elements.get(key);
    if (element === undefined) {
      element = build();
      this.elements.set(key, element);
    }
    return element;
  }

  messageElement(message, tag = "li") {
    const element = this.element(`m:${message.id}`, () => {
      const node = document.createElement(tag);
      node.className = `msg ${message.role}`;
      node.dataset.message = message.id;
      node.dataset.role = message.role;
      node.innerHTML = `<span class="who"></span><p class="text"></p>`;
      node.querySelector(".who").textContent = message.role === "user" ? "You" : "";
      return node;
    });
    element.dataset.status = message.status;
    setText(element.querySelector(".text"), message.text);
    if (message.role === "assistant" && message.status === "complete") this.rating(element, message);
    return element;
  }

  /** Thumbs up / down under a finished answer: this user's rating is pressed; the counts are
   * every user's latest rating (sessions.FEEDBACK on the log, so every device sees them). */
  rating(element, message) {
    let bar = element.querySelector(".rating");
    if (bar === null) {
      bar = document.createElement("div");
      bar.className = "rating";
      bar.setAttribute("role", "group");
      bar.setAttribute("aria-label", "Rate this answer");
      for (const [value, label] of [["up", "👍"], ["down", "👎"]]) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = `rate rate-${value}`;
        button.dataset.rating = value;
        button.setAttribute("aria-label", value === "up" ? "Good answer" : "Bad answer");
        button.innerHTML = `<span aria-hidden="true">${label}</span> <span class="count"></span>`;
        button.addEventListener("click", async () => {
          try {
            await this.view.feedback(message.id, value);
          } catch (error) {
            this.error(`Could not rate: ${error.message}`);
          }
        });
        bar.append(button);
      }
      element.append(bar);
    }
    const ratings = Object.entries(message.feedback || {});
    const mine = (message.feedback || {})[this.view.client.user];
    for (const button of bar.querySelectorAll("button")) {
      const value = button.dataset.rating;
      const count = ratings.filter(([, entry]) => entry.rating === value).length;
      button.setAttribute("aria-pressed", String(mine?.rating === value));
      setText(button.querySelector(".count"), count ? String(count) : "");
    }
  }

  runElement(runId) {
    const run = this.runs.get(runId);
    const element = this.element(`r:${runId}`, () => {
      const node = document.createElement("li");
      node.className = "run";
      node.dataset.run = runId;
      node.innerHTML = `
        <div class="run-head"><span class="agent"></span>
          <span class="badge run-status" role="status"></span></div>
        <div class="run-body"></div>
        <ul class="run-notes"></ul>`;
      return node;
    });
    const children = this.children.get(runId) || [];
    const status = run ? run.status : "running";
    element.dataset.status = status;
    element.classList.toggle("has-subruns", children.length > 0);
    setText(element.querySelector(".agent"), agentName(run, children.length > 0));
    setText(element.querySelector(".run-status"), statusText(run));
    // The run's messages and its sub-agents' runs, in the order they started (when known).
    const body = inStartOrder([
      ...(this.messagesOf.get(runId) || []).map((m) => [m.since, this.messageElement(m, "div")]),
      ...children.map((child) => [child.since, this.subrunGroup(child)]),
    ]);
    this.place(element.querySelector(".run-body"), body);
    this.place(element.querySelector(".run-notes"), this.notes(run));
    return element;
  }

  subrunGroup(child) {
    const group = this.element(`g:${child.id}`, () => {
      const node = document.createElement("ul");
      node.className = "subruns";
      return node;
    });
    group.setAttribute("aria-label", `Sub-agent: ${agentName(child, false)}`);
    this.place(group, [this.runElement(child.id)]);
    return group;
  }

  notes(run) {
    if (!run) return [];
    return (run.steers || []).map((steer, index) =>
      this.element(`n:${run.id}:${index}`, () => {
        const node = document.createElement("li");
        node.className = "note";
        node.textContent = `Steered: ${steer.text}`;
        return node;
      }),
    );
  }

  renderControls() {
    const active = this.view.activeRuns();
    this.$("#run-controls").hidden = active.length === 0;
    this.$("#interrupt").hidden = active.length === 0;
    this.$("#steer").hidden = this.steerTarget() === null;
  }

  renderPresence(presence) {
    const list = this.$("#presence");
    // A device is its id and its user: two members may pick the same id (?device=).
    const key = (device) => `${device?.id}/${device?.user}`;
    const selfKey = presence.self ? key(presence.self) : null;
    const items = (presence.devices || []).map((device) =>
      this.element(`p:${key(device)}`, () => {
        const node = document.createElement("li");
        node.dataset.device = device.id;
        return node;
      }),
    );
    (presence.devices || []).forEach((device, index) => {
      const mine = key(device) === selfKey ? " (this device)" : "";
      setText(items[index], `${device.label || device.id}${mine}`);
      items[index].classList.toggle("self", Boolean(mine));
    });
    this.place(list, items);
  }

  renderJobs(jobs) {
    const section = this.$("#jobs");
    section.hidden = jobs.length === 0;
    const items = jobs.map((job) => {
      const node = this.element(`j:${job.id}`, () => {
        const li = document.createElement("li");
        li.innerHTML = `<span class="job-label"></span><progress max="1"></progress><span class="job-state"></span>`;
        return li;
      });
      const label = job.label || job.name || job.id;
      setText(node.querySelector(".job-label"), label);
      const bar = node.querySelector("progress");
      bar.setAttribute("aria-label", `Progress of ${label}`);
      if (typeof job.progress === "number") bar.value = job.progress;
      else bar.removeAttribute("value");
      const pct = typeof job.progress === "number" ? `${Math.round(job.progress * 100)}%` : "";
      setText(node.querySelector(".job-state"), [job.status, pct, job.message].filter(Boolean).join(" · "));
      return node;
    });
    this.place(this.$("#job-list"), items);
  }
}

/** Elements of `[since, element]` pairs, by start offset when every one is known. */
function inStartOrder(pairs) {
  if (pairs.every(([since]) => since)) pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return pairs.map(([, element]) => element);
}

function groupBy(items, key) {
  const groups = new Map();
  for (const item of items) {
    const k = key(item);
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(item);
  }
  return groups;
}

function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

function agentName(run, orchestrating) {
  if (run && run.agent) return run.agent;
  if (run && run.parent) return "Sub-agent";
  return orchestrating ? "Orchestrator" : "Assistant";
}

function statusText(run) {
  if (!run) return "running";
  if (run.status === "cancelled" && run.reason === "timeout") return "cancelled (timeout)";
  if (run.status === "failed" && run.error) return `failed: ${run.error}`;
  return run.status;
}
