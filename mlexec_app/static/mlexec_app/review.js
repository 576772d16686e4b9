// The error-analysis and label-review pages: tag or decide without reloading, and by keyboard.
// Without this script every button is a plain form post that comes back to the same row.
// Text from the server is set with textContent; the ceilings arrive as HTML the server escaped.
(function () {
  "use strict";

  const errorList = document.querySelector('[data-review="errors"]');
  const labelTable = document.querySelector("table.label-review");
  const items = errorList
    ? Array.from(errorList.querySelectorAll(".example"))
    : labelTable
      ? Array.from(labelTable.querySelectorAll("tbody tr"))
      : [];
  if (!items.length) return;

  let current = -1;

  function select(i, scroll) {
    if (i < 0 || i >= items.length) return;
    if (current >= 0) items[current].classList.remove("current");
    current = i;
    items[i].classList.add("current");
    if (scroll) items[i].scrollIntoView({ block: "nearest" });
  }

  const fromHash = items.findIndex((el) => "#" + el.id === window.location.hash);
  select(fromHash >= 0 ? fromHash : 0, fromHash >= 0);

  async function post(form, button) {
    const body = new FormData(form);
    body.set(button.name, button.value);
    const answer = await fetch(form.action, {
      method: "POST",
      body: body,
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    if (!answer.ok) throw new Error(await answer.text());
    return answer.json();
  }

  function showError(item, error) {
    let note = item.querySelector(".review-error");
    if (!note) {
      note = document.createElement("p");
      note.className = "review-error";
      note.setAttribute("role", "alert");
      item.querySelector("form").appendChild(note);
    }
    note.textContent = "Not saved: " + error.message;
  }

  // Tags and decisions are sent one at a time, in the order they were pressed: two answers in flight could
  // arrive out of order, and the older one would show a state the server no longer has.
  let sending = Promise.resolve();
  function tag(item, button) {
    sending = sending.then(() => sendTag(item, button));
    return sending;
  }

  function decide(item, button) {
    sending = sending.then(() => sendDecision(item, button));
    return sending;
  }

  async function sendTag(item, button) {
    try {
      const answer = await post(button.form, button);
      for (const other of button.form.querySelectorAll("button[name=category]")) {
        other.setAttribute("aria-pressed", answer.tags.includes(other.value) ? "true" : "false");
      }
      document.getElementById("ceilings").innerHTML = answer.ceilings_html;
    } catch (error) {
      showError(item, error);
    }
  }

  async function sendDecision(item, button) {
    try {
      const answer = await post(button.form, button);
      item.dataset.verdict = answer.verdict;
      for (const other of button.form.querySelectorAll("button[name=verdict]")) {
        if (other.value === answer.verdict) other.setAttribute("aria-pressed", "true");
        else other.removeAttribute("aria-pressed");
      }
      let mark = button.form.querySelector(".verdict");
      if (!mark) {
        mark = document.createElement("strong");
        mark.className = "verdict";
        button.form.appendChild(mark);
      }
      mark.textContent = answer.verdict + "ed";
      document.getElementById("summary").textContent = answer.summary;
      select(items.indexOf(item) + 1, true);
    } catch (error) {
      showError(item, error);
    }
  }

  items.forEach((item, i) => {
    const form = item.querySelector("form");
    form.addEventListener("submit", (event) => {
      const button = event.submitter;
      if (!button) return;
      event.preventDefault();
      select(i, false);
      if (errorList) tag(item, button);
      else decide(item, button);
    });
  });

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement) return;
    const item = items[current];
    let button = null;
    if (event.key === "j" || event.key === "ArrowDown") select(current + 1, true);
    else if (event.key === "k" || event.key === "ArrowUp") select(current - 1, true);
    else if (errorList && /^[1-9]$/.test(event.key)) {
      button = item.querySelector('button[data-key="' + event.key + '"]');
    } else if (labelTable && event.key === "a") {
      button = item.querySelector('button[value="accept"]');
    } else if (labelTable && event.key === "r") {
      button = item.querySelector('button[value="reject"]');
    } else return;
    event.preventDefault();
    if (button) button.form.requestSubmit(button);
  });
})();
