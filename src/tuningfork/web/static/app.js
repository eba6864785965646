// The explorer's pages: queue, galaxy, disagreements. Plain browser JavaScript,
// shipped with the package (no CDN), talking only to the JSON API of app.py.
"use strict";

const TF = (() => {
  // A token given in the address (as `tuningfork explore` prints it) is kept for
  // later pages and removed from the address bar, so it does not end up in bookmarks.
  const url = new URL(window.location.href);
  if (url.searchParams.has("token")) {
    localStorage.setItem("tuningfork-token", url.searchParams.get("token"));
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search);
  }
  const token = () => localStorage.getItem("tuningfork-token") || "";

  // Writes are sent one after another, so the log's order is the key presses' order.
  let writes = Promise.resolve();

  async function api(path, options = {}) {
    const headers = Object.assign({}, options.headers || {});
    if (token()) headers["Authorization"] = "Bearer " + token();
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method: options.method || "GET", headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch (error) { /* not JSON */ }
      throw new Error(response.status + ": " + detail);
    }
    return response.json();
  }

  function write(path, body) {
    const done = writes.then(() => api(path, { method: "POST", body }));
    writes = done.catch(() => undefined);
    return done;
  }

  function status(text, isError) {
    const element = document.getElementById("status");
    if (!element) return;
    element.textContent = text;
    element.className = isError ? "status error" : "status";
  }

  function element(tag, attributes = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  const fmt = (value, digits = 3) =>
    value === null || value === undefined ? "–"
      : typeof value === "number" && !Number.isInteger(value) ? value.toFixed(digits) : String(value);

  function imageUrl(id, options = {}) {
    const params = new URLSearchParams({ stretch: options.stretch || "asinh" });
    if (options.bands) params.set("bands", options.bands);
    if (options.invert) params.set("invert", "true");
    return "/api/galaxy/" + encodeURIComponent(id) + "/image.png?" + params;
  }

  function toggleHelp(force) {
    const help = document.getElementById("help");
    if (help) help.hidden = force === undefined ? !help.hidden : !force;
  }

  function labelKeys(meta) {
    const keys = {};
    for (const choice of meta.labels) if (choice.key) keys[choice.key] = choice.label;
    return keys;
  }

  function fillHelp(meta) {
    const list = document.getElementById("help-labels");
    if (!list) return;
    list.replaceChildren(...meta.labels.filter((c) => c.key).map((choice) =>
      element("li", {}, [element("kbd", { text: choice.key }), " " + (choice.title || choice.label)])));
  }

  async function whoami(meta) {
    const who = document.getElementById("annotator");
    if (who) who.textContent = meta.annotator ? "annotator: " + meta.annotator : "read only (no token)";
  }

  function search(event) {
    event.preventDefault();
    const text = document.getElementById("search-text").value.trim();
    const parts = text.split(/[\s,]+/);
    const query = parts.length >= 2 && parts.every((p) => p !== "" && !isNaN(Number(p)))
      ? "ra=" + parts[0] + "&dec=" + parts[1] + (parts[2] ? "&radius=" + parts[2] : "")
      : "q=" + encodeURIComponent(text);
    api("/api/search?" + query).then((result) => {
      const box = document.getElementById("search-results");
      box.replaceChildren(...(result.items.length ? result.items.map((item) =>
        element("a", { href: "/galaxy/" + encodeURIComponent(item.id), class: "search-hit",
          text: item.id + (item.separation_arcsec !== undefined ? " (" + fmt(item.separation_arcsec, 1) + "\")" : "") }))
        : [element("span", { text: "no match" })]));
    }).catch((error) => status(error.message, true));
  }

  // ------------------------------------------------------------------ queue
  async function queuePage() {
    const meta = await api("/api/meta");
    whoami(meta); fillHelp(meta);
    const keys = labelKeys(meta);
    const form = document.getElementById("filters");
    for (const [name, values] of Object.entries(meta.filters)) {
      const select = form.elements[name];
      if (!select || !Array.isArray(values)) continue;
      if (!values.length) { select.closest("label").hidden = true; continue; }
      for (const value of values) select.append(element("option", { value, text: value }));
    }
    if (!meta.filters.outlier_score) for (const box of form.querySelectorAll(".outlier")) box.hidden = true;
    const saved = new URLSearchParams(window.location.search);
    for (const [key, value] of saved) if (form.elements[key]) {
      if (form.elements[key].type === "checkbox") form.elements[key].checked = value === "true";
      else form.elements[key].value = value;
    }
    const state = { items: [], selected: 0, offset: Number(saved.get("offset") || 0), total: 0,
                    view: localStorage.getItem("tuningfork-view") || "mosaic" };
    const limit = 60;

    function params() {
      const p = new URLSearchParams();
      for (const input of form.elements) {
        if (!input.name) continue;
        if (input.type === "checkbox") { if (input.checked) p.set(input.name, "true"); }
        else if (input.value !== "") p.set(input.name, input.value);
      }
      return p;
    }

    async function load() {
      const p = params();
      p.set("offset", state.offset); p.set("limit", limit);
      history.replaceState(null, "", "/?" + p);
      const result = await api("/api/queue?" + p);
      state.items = result.items; state.total = result.total;
      state.selected = Math.min(state.selected, Math.max(0, state.items.length - 1));
      render();
    }

    function render() {
      const box = document.getElementById("queue");
      box.className = state.view === "mosaic" ? "mosaic" : "list";
      document.getElementById("view-mosaic").classList.toggle("active", state.view === "mosaic");
      document.getElementById("view-list").classList.toggle("active", state.view === "list");
      document.getElementById("count").textContent = state.total
        ? (state.offset + 1) + "–" + (state.offset + state.items.length) + " of " + state.total : "no galaxies";
      box.replaceChildren(...state.items.map((item, index) => {
        const caption = [element("span", { class: "gid", text: item.id }),
          element("span", { text: item.predicted_class !== undefined ? item.predicted_class + " " + fmt(item.confidence, 2) : "" })];
        if (item.group !== undefined) caption.push(element("span", { class: "muted", text: "group " + fmt(item.group) }));
        if (item.outlier_score !== undefined) caption.push(element("span", { class: "muted", text: "outlier " + fmt(item.outlier_score, 2) }));
        caption.push(element("span", { class: "label-tag", text: item.my_label || "" }));
        const node = element("div", {
          class: "item" + (index === state.selected ? " selected" : "") + (item.my_label ? " labelled" : ""),
          "data-id": item.id, onclick: () => { state.selected = index; render(); },
          ondblclick: () => { window.location.href = "/galaxy/" + encodeURIComponent(item.id); },
        }, [element("img", { src: imageUrl(item.id), alt: item.id, loading: "lazy" }),
            element("div", { class: "caption" }, caption)]);
        return node;
      }));
      const chosen = box.children[state.selected];
      if (chosen) chosen.scrollIntoView({ block: "nearest" });
    }

    function move(step) {
      const next = state.selected + step;
      if (next >= 0 && next < state.items.length) { state.selected = next; render(); return; }
      if (next >= state.items.length && state.offset + limit < state.total) {
        state.offset += limit; state.selected = 0; load();
      } else if (next < 0 && state.offset > 0) {
        state.offset = Math.max(0, state.offset - limit); state.selected = limit - 1; load();
      }
    }

    async function label(value) {
      const item = state.items[state.selected];
      if (!item) return;
      const body = value === null ? { id: item.id, action: "skip" } : { id: item.id, label: value };
      const index = state.selected;
      move(1);
      try {
        await write("/api/labels", body);
        if (value !== null) { item.my_label = value; }
        status((value === null ? "skipped " : "labelled " + value + ": ") + item.id);
        if (state.items[index] === item) render();
      } catch (error) { status(error.message, true); }
    }

    async function undo() {
      try {
        const result = await write("/api/labels/undo");
        if (!result.undone) { status("nothing to undo"); return; }
        const index = state.items.findIndex((item) => item.id === result.undone.galaxy_id);
        if (index >= 0) { state.items[index].my_label = null; state.selected = index; }
        status("undid " + result.undone.label + ": " + result.undone.galaxy_id);
        render();
      } catch (error) { status(error.message, true); }
    }

    document.getElementById("view-mosaic").onclick = () => { state.view = "mosaic"; localStorage.setItem("tuningfork-view", "mosaic"); render(); };
    document.getElementById("view-list").onclick = () => { state.view = "list"; localStorage.setItem("tuningfork-view", "list"); render(); };
    document.getElementById("previous-page").onclick = () => { if (state.offset > 0) { state.offset = Math.max(0, state.offset - limit); load(); } };
    document.getElementById("next-page").onclick = () => { if (state.offset + limit < state.total) { state.offset += limit; load(); } };
    form.addEventListener("change", () => { state.offset = 0; state.selected = 0; load().catch((e) => status(e.message, true)); });
    form.addEventListener("submit", (event) => event.preventDefault());
    document.getElementById("search").addEventListener("submit", search);

    document.addEventListener("keydown", (event) => {
      if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
      const columns = state.view === "mosaic"
        ? Math.max(1, Math.round(document.getElementById("queue").clientWidth / 170)) : 1;
      if (keys[event.key] !== undefined) label(keys[event.key]);
      else if (event.key === "s") label(null);
      else if (event.key === "z") undo();
      else if (event.key === "ArrowRight") move(1);
      else if (event.key === "ArrowLeft") move(-1);
      else if (event.key === "ArrowDown") move(columns);
      else if (event.key === "ArrowUp") move(-columns);
      else if (event.key === "Enter" && state.items[state.selected]) window.location.href = "/galaxy/" + encodeURIComponent(state.items[state.selected].id);
      else if (event.key === "?") toggleHelp();
      else if (event.key === "Escape") toggleHelp(false);
      else return;
      event.preventDefault();
    });
    await load();
    document.body.dataset.ready = "true";
  }

  // ----------------------------------------------------------------- galaxy
  async function galaxyPage() {
    const id = decodeURIComponent(window.location.pathname.split("/").pop());
    const meta = await api("/api/meta");
    whoami(meta); fillHelp(meta);
    const keys = labelKeys(meta);
    const galaxy = await api("/api/galaxy/" + encodeURIComponent(id));
    const view = { stretch: localStorage.getItem("tuningfork-stretch") || "asinh", invert: false, zoom: 1,
                   bands: Array.from({ length: galaxy.bands }, (_, band) => band) };
    document.title = galaxy.id + " – tuningfork explorer";
    document.getElementById("title").textContent = "Galaxy " + galaxy.id;
    const position = [galaxy.predicted_class !== undefined ? "predicted " + galaxy.predicted_class + " (" + fmt(galaxy.confidence, 3) + ")" : "",
      galaxy.triage ? galaxy.triage + (galaxy.expert_rank ? " #" + galaxy.expert_rank : "") : "",
      galaxy.ra !== undefined && galaxy.ra !== null ? "RA " + fmt(galaxy.ra, 5) + " Dec " + fmt(galaxy.dec, 5) : ""];
    document.getElementById("subtitle").textContent = position.filter(Boolean).join(" · ");

    const image = document.getElementById("image");
    function draw() {
      image.src = imageUrl(galaxy.id, { stretch: view.stretch, invert: view.invert,
        bands: view.bands.length === galaxy.bands ? "" : view.bands.join(",") });
      // The image grows inside its fixed frame, which scrolls; zooming keeps the centre in view.
      const frame = image.parentElement, side = frame.clientWidth * view.zoom;
      image.style.width = image.style.height = side + "px";
      frame.scrollLeft = frame.scrollTop = (side - frame.clientWidth) / 2;
      document.getElementById("zoom-value").textContent = view.zoom + "×";
    }
    const stretch = document.getElementById("stretch");
    for (const name of meta.stretches) stretch.append(element("option", { value: name, text: name }));
    stretch.value = view.stretch;
    stretch.onchange = () => { view.stretch = stretch.value; localStorage.setItem("tuningfork-stretch", view.stretch); draw(); };
    document.getElementById("invert").onchange = (event) => { view.invert = event.target.checked; draw(); };
    const zoom = (factor) => { view.zoom = Math.min(8, Math.max(1, view.zoom * factor)); draw(); };
    document.getElementById("zoom-in").onclick = () => zoom(2);
    document.getElementById("zoom-out").onclick = () => zoom(0.5);
    const bandBox = document.getElementById("bands");
    if (galaxy.bands > 1) {
      for (let band = 0; band < galaxy.bands; band++) {
        const box = element("input", { type: "checkbox", checked: "checked", "data-band": band });
        box.onchange = () => {
          view.bands = [...bandBox.querySelectorAll("input:checked")].map((input) => Number(input.dataset.band));
          if (!view.bands.length) { box.checked = true; view.bands = [band]; }
          draw();
        };
        bandBox.append(element("label", {}, [box, " band " + band]));
      }
    } else bandBox.hidden = true;
    draw();

    function table(id, values, bars) {
      const box = document.getElementById(id);
      const entries = Object.entries(values || {});
      box.closest("section").hidden = !entries.length;
      box.replaceChildren(...entries.map(([name, value]) => element("tr", {}, [
        element("th", { text: name }),
        element("td", { class: "number", text: fmt(value) }),
        bars ? element("td", {}, [element("div", { class: "bar", style: "width:" + Math.round(100 * (value || 0)) + "px" })]) : "",
      ])));
    }
    table("probabilities", galaxy.probabilities, true);
    table("fractions", galaxy.vote_fractions, true);
    table("measurements", galaxy.measurements, false);
    table("cluster", galaxy.cluster, false);

    const similarButton = document.getElementById("show-similar");
    similarButton.hidden = !galaxy.has_similar;
    similarButton.onclick = async () => {
      similarButton.disabled = true;
      try {
        const result = await api("/api/galaxy/" + encodeURIComponent(galaxy.id) + "/similar");
        document.getElementById("similar").replaceChildren(...(result.items.length ? result.items.map((item) =>
          element("a", { href: "/galaxy/" + encodeURIComponent(item.id), class: "item" }, [
            element("img", { src: imageUrl(item.id), alt: item.id }),
            element("div", { class: "caption" }, [element("span", { class: "gid", text: item.id })])]))
          : [element("p", { text: "no neighbours recorded" })]));
      } catch (error) { status(error.message, true); }
    };

    const labels = document.getElementById("label-buttons");
    const mine = document.getElementById("my-label");
    mine.textContent = galaxy.my_label ? "your label: " + galaxy.my_label : "not labelled by you";
    const go = (target) => { if (target) window.location.href = "/galaxy/" + encodeURIComponent(target); };
    async function label(value) {
      try {
        await write("/api/labels", value === null ? { id: galaxy.id, action: "skip" } : { id: galaxy.id, label: value });
        status((value === null ? "skipped" : "labelled " + value));
        go(galaxy.next);
      } catch (error) { status(error.message, true); }
    }
    async function undo() {
      try {
        const result = await write("/api/labels/undo");
        if (!result.undone) status("nothing to undo");
        else go(result.undone.galaxy_id);
      } catch (error) { status(error.message, true); }
    }
    for (const choice of meta.labels) {
      labels.append(element("button", { type: "button", onclick: () => label(choice.label),
        text: (choice.key ? choice.key + " · " : "") + (choice.title || choice.label) }));
    }
    labels.append(element("button", { type: "button", class: "secondary", onclick: () => label(null), text: "s · skip" }));
    labels.append(element("button", { type: "button", class: "secondary", onclick: undo, text: "z · undo" }));
    document.getElementById("search").addEventListener("submit", search);

    document.addEventListener("keydown", (event) => {
      if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
      if (keys[event.key] !== undefined) label(keys[event.key]);
      else if (event.key === "s") label(null);
      else if (event.key === "z") undo();
      else if (event.key === "ArrowRight") go(galaxy.next);
      else if (event.key === "ArrowLeft") go(galaxy.previous);
      else if (event.key === "+" || event.key === "=") zoom(2);
      else if (event.key === "-") zoom(0.5);
      else if (event.key === "i") { const box = document.getElementById("invert"); box.checked = !box.checked; box.onchange({ target: box }); }
      else if (event.key === "?") toggleHelp();
      else if (event.key === "Escape") toggleHelp(false);
      else return;
      event.preventDefault();
    });
    document.body.dataset.ready = "true";
  }

  // ---------------------------------------------------------- disagreements
  async function disagreementsPage() {
    const meta = await api("/api/meta");
    whoami(meta);
    const result = await api("/api/agreement");
    const method = { cohen: "Cohen's kappa", fleiss: "Fleiss' kappa" }[result.method];
    document.getElementById("kappa").textContent = method
      ? method + " = " + fmt(result.kappa) + " over " + result.galaxies + " galaxies labelled by at least two of " + result.annotators.length + " annotators"
      : "Too few galaxies labelled by two annotators for a kappa (" + result.annotators.length + " annotators so far).";
    document.getElementById("pairs").replaceChildren(...result.pairs.map((pair) => element("tr", {}, [
      element("td", { text: pair.a + " / " + pair.b }), element("td", { class: "number", text: String(pair.galaxies) }),
      element("td", { class: "number", text: fmt(pair.kappa) })])));
    document.getElementById("disputed").replaceChildren(...result.disagreements.map((row) => element("tr", {}, [
      element("td", {}, [element("a", { href: "/galaxy/" + encodeURIComponent(row.galaxy_id) }, [
        element("img", { src: imageUrl(row.galaxy_id), alt: row.galaxy_id, class: "thumb" })])]),
      element("td", {}, [element("a", { href: "/galaxy/" + encodeURIComponent(row.galaxy_id), text: row.galaxy_id })]),
      element("td", { text: row.label || "tie" }), element("td", { class: "number", text: fmt(row.agreement, 2) }),
      element("td", { text: row.labels.replaceAll(";", ", ") })])));
    document.body.dataset.ready = "true";
  }

  return { queuePage, galaxyPage, disagreementsPage, status };
})();

window.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  const run = { queue: TF.queuePage, galaxy: TF.galaxyPage, disagreements: TF.disagreementsPage }[page];
  if (run) run().catch((error) => TF.status(error.message, true));
});
