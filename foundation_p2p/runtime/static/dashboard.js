// The dashboard: polls /api/overview every 500 ms and redraws. No framework, no build step.
"use strict";

const POLL_MS = 500;
const LAG_POINTS = 120;
const lagHistory = [];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  return value >= 10 ? `${value.toFixed(0)} s` : `${value.toFixed(1)} s`;
}

function bytes(value) {
  if (value < 1024) return `${value} B`;
  if (value < 1024 * 1024) return `${(value / 1024).toFixed(1)} KiB`;
  return `${(value / 1024 / 1024).toFixed(1)} MiB`;
}

function fillBody(table, rows) {
  const body = document.querySelector(`${table} tbody`);
  body.replaceChildren(...rows);
}

function drawMembers(data) {
  fillBody("#members", data.members.map((m) => el("tr", { "data-member": m.id, "data-status": m.status },
    el("td", {}, m.self ? `${m.id} (this node)` : m.id),
    el("td", { class: `status status-${m.status}` }, m.status),
    el("td", {}, seconds(m.since_ago)),
    el("td", {}, m.self ? "–" : seconds(m.last_heard_ago)),
    el("td", {}, String(m.incarnation)),
    el("td", {}, m.address),
    el("td", {}, m.lag === null || m.lag === undefined ? "–" : seconds(m.lag)),
  )));
}

function drawTopology(data) {
  const picture = document.getElementById("topology");
  const members = data.members.filter((m) => m.status !== "left");
  const count = Math.max(members.length, 1);
  const where = {};
  members.forEach((m, i) => {
    const angle = (2 * Math.PI * i) / count - Math.PI / 2;
    where[m.id] = [180 + 95 * Math.cos(angle), 125 + 95 * Math.sin(angle)];
  });
  const shapes = [];
  for (const link of data.links) {
    const a = where[link.from], b = where[link.to];
    if (!a || !b) continue;
    shapes.push(svg("line", {
      x1: a[0], y1: a[1], x2: b[0], y2: b[1], class: `link link-${link.state}`,
      "data-from": link.from, "data-to": link.to,
      stroke: { ok: "#17803d", unreachable: "#c0262d", accuses: "#b36b00" }[link.state] || "#999",
      "stroke-width": 2,
      "stroke-dasharray": { ok: "", unreachable: "6 4", accuses: "2 3" }[link.state] || "",
    }));
  }
  for (const m of members) {
    const [x, y] = where[m.id];
    const fill = { alive: "#d9f2e1", suspect: "#ffe3b3", dead: "#f7c8ca" }[m.status] || "#eee";
    shapes.push(svg("circle", { cx: x, cy: y, r: 18, fill, stroke: m.self ? "#222" : "#777",
      "stroke-width": m.self ? 3 : 1, "data-member": m.id }));
    const label = svg("text", { x, y: y + 34, "text-anchor": "middle", "font-size": 12 });
    label.textContent = m.id;
    shapes.push(label);
  }
  picture.replaceChildren(...shapes);
}

function drawLag(data) {
  const values = Object.values(data.lag || {});
  const worst = values.length ? Math.max(...values) : 0;
  lagHistory.push(worst);
  if (lagHistory.length > LAG_POINTS) lagHistory.shift();
  const top = Math.max(1, ...lagHistory);
  const points = lagHistory.map((v, i) => `${(i * 300) / (LAG_POINTS - 1)},${58 - (v / top) * 56}`);
  document.querySelector("#sparkline polyline").setAttribute("points", points.join(" "));
  const perPeer = Object.entries(data.lag || {}).map(([peer, v]) => `${peer}: ${seconds(v)}`);
  document.getElementById("lag-now").textContent =
    `now ${seconds(worst)} (scale ${seconds(top)})` + (perPeer.length ? ` — ${perPeer.join(", ")}` : "");
}

function drawReplicas(data) {
  fillBody("#replicas", data.replicas.map((r) => el("tr", { "data-replica": r.name },
    el("td", {}, r.name), el("td", {}, r.type), el("td", {}, el("code", {}, r.digest)),
    el("td", {}, bytes(r.size)))));
  const section = document.getElementById("registry-section");
  section.hidden = data.registry === null || data.registry === undefined;
  if (!section.hidden) {
    fillBody("#registry", data.registry.map((e) => el("tr", { "data-service": e.service },
      el("td", {}, e.service),
      el("td", {}, e.instances.length
        ? e.instances.map((i) => `${i.node} ${JSON.stringify(i.capabilities)} load ${i.load}`).join("; ")
        : JSON.stringify(e.raw)))));
  }
}

function describe(event) {
  if (event.kind === "refused") return `refused ${event.reason} from ${event.src}`;
  return `${event.member} ${event.kind.replace("member_", "")}`;
}

function drawEvents(data) {
  const items = data.events.map((e) => el("li", { "data-kind": e.kind },
    `${seconds(e.ago)} ago  ${describe(e)}`));
  document.getElementById("events").replaceChildren(...items);
}

function drawHealth(data) {
  const health = data.health || {};
  const status = document.getElementById("cluster-status");
  status.textContent = health.cluster_status || "";
  status.className = health.cluster_status === "ok" ? "ok" : "bad";
  const advice = health.recommendations || [];
  document.getElementById("recommendations").replaceChildren(
    ...(advice.length ? advice.map((a) => el("li", {}, a)) : [el("li", {}, "nothing to report")]));
  const changed = health.last_topology_change_ago;
  document.getElementById("summary").textContent =
    `cluster ${data.cluster} · ${health.actual_members} of ${health.expected_members} members alive` +
    ` · last topology change ${changed === null ? "never" : seconds(changed) + " ago"}` +
    ` · up ${seconds(data.uptime)}`;
}

function draw(data) {
  document.getElementById("node").textContent = `${data.node} @ ${data.address}`;
  if (!data.running) {
    document.getElementById("summary").textContent = "node stopped";
    return;
  }
  drawHealth(data);
  drawMembers(data);
  drawTopology(data);
  drawLag(data);
  drawReplicas(data);
  drawEvents(data);
}

async function poll() {
  const banner = document.getElementById("connection");
  try {
    const response = await fetch("/api/overview", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    draw(await response.json());
    banner.hidden = true;
    document.body.dataset.updated = String(Date.now());
  } catch (error) {
    banner.hidden = false;
    banner.textContent = `node unreachable: ${error.message}`;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
