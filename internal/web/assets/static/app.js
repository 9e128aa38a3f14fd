// Live overview: the server sends the rendered overview, at most once a
// second, when the manager's snapshot changed.
(function () {
  var live = document.getElementById("live");
  if (!live || !window.EventSource) return;
  var es = new EventSource("/events");
  es.addEventListener("overview", function (e) { live.innerHTML = e.data; });
})();
