/* dockyard UI: confirmations, live regions fed by /ui/events, log follow.
 *
 * No inline script anywhere (the Content-Security-Policy forbids it): pages mark what
 * this file acts on with data- attributes.
 *   form[data-confirm]        asks before it is submitted
 *   [data-live="tokens"]      refreshed (htmx, "dockyard:refresh") when an event concerns
 *                             it: "any", "apps", "jobs", "app:<id>", "job:<id>", "task:<id>";
 *                             data-live-delay: at most one refresh per that many ms
 *   pre[data-src]             a log, followed while its "follow" box is ticked
 * Text from the server is only ever inserted as text (textContent), never as markup.
 */
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopPropagation();
    }
  }, true);

  function concerns(region, change) {
    var tokens = (region.getAttribute("data-live") || "").split(" ");
    return tokens.some(function (token) {
      if (token === "any") return true;
      if (token === "apps") return change.apps.length > 0;
      if (token === "jobs") return change.jobs.length > 0;
      var colon = token.indexOf(":");
      if (colon < 0) return false;
      var kind = token.slice(0, colon), id = token.slice(colon + 1);
      if (kind === "app") return change.apps.indexOf(id) >= 0;
      if (kind === "job") return change.jobs.indexOf(id) >= 0;
      if (kind === "task") return change.tasks.indexOf(id) >= 0;
      return false;
    });
  }

  var pending = {};

  function refresh(region) {
    var id = region.id;
    if (!id || pending[id]) return;
    var delay = parseInt(region.getAttribute("data-live-delay") || "500", 10);
    pending[id] = window.setTimeout(function () {
      delete pending[id];
      var current = document.getElementById(id);
      if (current && window.htmx) window.htmx.trigger(current, "dockyard:refresh");
    }, delay);
  }

  function regions() {
    return Array.prototype.slice.call(document.querySelectorAll("[data-live]"));
  }

  function showState(text, on) {
    var badge = document.getElementById("live-state");
    if (!badge) return;
    badge.textContent = text;
    badge.className = "live-state " + (on ? "on" : "off");
  }

  function listen() {
    var url = document.body.getAttribute("data-events");
    if (!url || !window.EventSource || regions().length === 0) return;
    var source = new EventSource(url);
    source.addEventListener("open", function () {
      showState("live", true);
      // What changed between rendering this page (or losing the stream) and now listening
      // came as no event: fetch each region once.
      regions().forEach(refresh);
    });
    source.addEventListener("error", function () {
      showState("reconnecting", false);
    });
    source.addEventListener("change", function (message) {
      var change;
      try { change = JSON.parse(message.data); } catch (ignored) { return; }
      regions().forEach(function (region) { if (concerns(region, change)) refresh(region); });
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  function follow(pre) {
    var box = document.querySelector('input.follow[data-log="' + pre.id + '"]');
    var busy = false;

    function scrolledToEnd() {
      return pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    }

    function poll() {
      if (busy || !box || !box.checked) return;
      busy = true;
      var url = new URL(pre.getAttribute("data-src"), window.location.origin);
      url.searchParams.set("offset", pre.getAttribute("data-offset") || "0");
      window.fetch(url.toString(), {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (chunk) {
          if (!chunk || typeof chunk.data !== "string") return;
          if (chunk.data) {
            var atEnd = scrolledToEnd();
            pre.appendChild(document.createTextNode(chunk.data));
            if (atEnd) pre.scrollTop = pre.scrollHeight;
          }
          pre.setAttribute("data-offset", String(chunk.end));
        })
        .catch(function () { /* the next poll tries again */ })
        .then(function () { busy = false; });
    }

    window.setInterval(poll, 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    listen();
    Array.prototype.slice.call(document.querySelectorAll("pre[data-src]")).forEach(follow);
  });
})();
