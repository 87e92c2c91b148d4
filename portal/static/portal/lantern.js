// Lantern: small progressive enhancements. Every page works without this file.
(function () {
  "use strict";

  function on(selector, event, handler) {
    document.addEventListener(event, function (e) {
      const target = e.target.closest(selector);
      if (target) handler(e, target);
    });
  }

  // Forms that submit themselves when a control changes (the auto-import toggle).
  on("[data-autosubmit]", "change", function (e, control) {
    control.form.requestSubmit();
  });

  // "Select all" checkboxes: data-check-all="name of the row checkboxes".
  on("[data-check-all]", "change", function (e, box) {
    document.querySelectorAll('input[name="' + box.dataset.checkAll + '"]').forEach(function (row) {
      row.checked = box.checked;
    });
  });

  // The type of registered entities is not configurable when the integration only merges.
  function syncRegistration() {
    const chosen = document.querySelector('input[name="registration"]:checked');
    const type = document.getElementById("id_entity_type");
    if (!chosen || !type) return;
    type.disabled = chosen.value === "merge";
    const other = document.getElementById("id_entity_type_other");
    if (other) other.disabled = type.disabled;
  }
  on('input[name="registration"]', "change", syncRegistration);
  document.addEventListener("DOMContentLoaded", syncRegistration);

  // A select with an "Other…" choice (data-other="id of its text input"): the text input
  // shows only while Other… is chosen. Without JS both stay visible.
  function syncOther(select) {
    const other = document.getElementById(select.dataset.other);
    const field = other && other.closest(".field");
    if (field) field.hidden = select.value !== "__other__";
  }
  on("select[data-other]", "change", function (e, select) { syncOther(select); });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("select[data-other]").forEach(syncOther);
  });

  // Row editors (correlation rules, field mappings): add and remove rows.
  on("[data-add-row]", "click", function (e, button) {
    e.preventDefault();
    const editor = document.getElementById(button.dataset.addRow);
    const template = editor.querySelector("template");
    const row = template.content.firstElementChild.cloneNode(true);
    editor.querySelector("[data-rows]").appendChild(row);
    const first = row.querySelector("input");
    if (first) first.focus();
  });
  on("[data-remove-row]", "click", function (e, button) {
    e.preventDefault();
    button.closest(".row").remove();
  });

  // Entity pickers: type part of a name, choose an entity ref from the suggestions.
  let pickerTimer = null;
  on("input[data-entity-picker]", "input", function (e, input) {
    clearTimeout(pickerTimer);
    pickerTimer = setTimeout(function () {
      const url = new URL(input.dataset.entityPicker, window.location.href);
      url.searchParams.set("q", input.value.split("/").pop());
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : { results: [] }; })
        .then(function (data) {
          const list = document.getElementById(input.getAttribute("list"));
          if (!list) return;
          list.replaceChildren();
          data.results.forEach(function (item) {
            const option = document.createElement("option");
            option.value = item.ref;
            option.label = item.title || item.name;
            list.appendChild(option);
          });
        });
    }, 200);
  });

  // Live regions that refresh themselves while something runs (sync progress).
  function poll(region) {
    if (!region.querySelector("[data-running]")) return;
    setTimeout(function () {
      fetch(region.dataset.pollUrl, { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (html !== null) region.innerHTML = html;
          poll(region);
        });
    }, 2000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll-url]").forEach(poll);
  });
})();
