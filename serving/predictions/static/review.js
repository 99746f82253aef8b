// The review page's one behaviour: mark the selected card by click or key, then recount.
"use strict";

const VERDICT_TEXT = { false_alarm: "false alarm", confirmed_defect: "confirmed defect" };
const KEYS = { f: "false_alarm", d: "confirmed_defect" };

function cards() {
  return Array.from(document.querySelectorAll(".card"));
}

function say(text, isError) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

function reviewerName() {
  const field = document.getElementById("reviewer");
  return field ? field.value.trim() : null; // null: the ingress names the reviewer
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

async function recount() {
  const query = new URLSearchParams(); // the counts follow the page's variant and line
  for (const key of ["variant", "line"]) if (document.body.dataset[key]) query.set(key, document.body.dataset[key]);
  const response = await fetch("api/summary?" + query.toString());
  if (!response.ok) return;
  const body = document.querySelector("#false-alarms tbody");
  body.replaceChildren();
  for (const day of await response.json()) {
    const row = document.createElement("tr");
    row.dataset.day = day.day;
    const share = cell(day.share === null ? "–" : " " + Math.round(100 * day.share) + " %", "share");
    if (day.share !== null) {
      const meter = document.createElement("meter");
      meter.min = 0; meter.max = 1; meter.value = day.share;
      share.prepend(meter);
    }
    row.append(cell(day.day), cell(day.flagged), cell(day.reviewed),
               cell(day.false_alarms, "false-alarms"), cell(day.confirmed), share);
    body.append(row);
  }
}

async function mark(card, verdict) {
  const reviewer = reviewerName();
  if (reviewer === "") {
    say("Enter your name first.", true);
    document.getElementById("reviewer").focus();
    return;
  }
  localStorage.setItem("anomalyops-reviewer", reviewer || "");
  const body = { verdict: verdict };
  if (reviewer) body.reviewer = reviewer;
  const id = card.dataset.id;
  const response = await fetch("api/predictions/" + encodeURIComponent(id) + "/verdict", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    say("Not stored: " + (answer.detail || response.statusText), true);
    return;
  }
  card.classList.remove("false_alarm", "confirmed_defect");
  card.classList.add(answer.verdict);
  card.querySelector(".verdict").textContent = VERDICT_TEXT[answer.verdict] + " · " + answer.reviewer;
  say("#" + id + " marked " + VERDICT_TEXT[answer.verdict] + " by " + answer.reviewer + " at " + answer.time);
  await recount();
}

function select(card) {
  if (!card) return;
  for (const other of cards()) other.classList.toggle("selected", other === card);
  card.focus();
}

document.addEventListener("DOMContentLoaded", () => {
  const field = document.getElementById("reviewer");
  if (field) field.value = localStorage.getItem("anomalyops-reviewer") || "";
  for (const card of cards()) {
    card.addEventListener("focus", () => select(card));
    for (const button of card.querySelectorAll("button[data-verdict]")) {
      button.addEventListener("click", () => mark(card, button.dataset.verdict));
    }
  }
  select(cards()[0]);
  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
    const all = cards();
    const current = all.indexOf(document.querySelector(".card.selected"));
    if (event.key === "j" || event.key === "ArrowRight") select(all[Math.min(current + 1, all.length - 1)]);
    else if (event.key === "k" || event.key === "ArrowLeft") select(all[Math.max(current - 1, 0)]);
    else if (KEYS[event.key] && current >= 0) mark(all[current], KEYS[event.key]);
    else return;
    event.preventDefault();
  });
});
