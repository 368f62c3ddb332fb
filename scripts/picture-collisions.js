// Collision check for SocketKit's pictures, run by headless Chromium on a page that holds one
// picture (scripts/picture-collisions.sh, Tests/EchoTests/PictureCollisionTests.swift).
// Every <text> box (getBBox, in the SVG's coordinates) must intersect no other text box, no
// badge (the state diagram's numbered circles) and no arrow or edge (sampled along the path).
// Each picture sits in a <div data-name="...">; the findings go out as JSON, one entry per
// picture, in the page's last <pre> (id "collisions").
"use strict";
(function () {
 var results = [];
 var pictures = document.querySelectorAll("body > div[data-name] > svg");
 for (var n = 0; n < pictures.length; n++) {
  var svg = pictures[n];
  var slack = 0.5;  // boxes that only touch do not collide
  function box(el) {
    var b = el.getBBox();
    var m = el.getCTM(), r = svg.getCTM();
    var dx = m && r ? m.e - r.e : 0, dy = m && r ? m.f - r.f : 0;
    return { x: b.x + dx + slack, y: b.y + dy + slack, w: b.width - 2 * slack, h: b.height - 2 * slack };
  }
  function hit(a, b) { return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h; }
  function inside(p, b) { return p.x > b.x && p.x < b.x + b.w && p.y > b.y && p.y < b.y + b.h; }
  function name(el) { return (el.textContent || el.getAttribute("class") || el.tagName).trim().slice(0, 60); }
  var texts = Array.prototype.filter.call(svg.querySelectorAll("text"), function (t) {
    return t.textContent.trim() !== "" && t.getBBox().width > 0;
  }).map(function (t) { return { el: t, b: box(t) }; });
  var badges = Array.prototype.map.call(svg.querySelectorAll(".step circle"), function (c) { return { el: c, b: box(c) }; });
  var paths = Array.prototype.slice.call(svg.querySelectorAll("line.arrow, .edge path"));
  // The ladder's state bands: a label of one lane must not run into another lane's band.
  var bands = Array.prototype.map.call(svg.querySelectorAll("g.state rect.band"), function (r) { return { el: r, b: box(r) }; });
  // Each arrow or edge sampled once, every 1.5 px, with its extent for a quick rejection.
  var sampled = paths.map(function (path) {
    var length = path.getTotalLength(), m = path.getCTM(), r = svg.getCTM();
    var dx = m && r ? m.e - r.e : 0, dy = m && r ? m.f - r.f : 0;
    var points = [], minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
    for (var s = 0; s <= length; s += 1.5) {
      var pt = path.getPointAtLength(s), q = { x: pt.x + dx, y: pt.y + dy };
      points.push(q);
      minX = Math.min(minX, q.x); minY = Math.min(minY, q.y); maxX = Math.max(maxX, q.x); maxY = Math.max(maxY, q.y);
    }
    return { el: path, points: points, extent: { x: minX - 1, y: minY - 1, w: maxX - minX + 2, h: maxY - minY + 2 } };
  });
  var found = [];
  for (var i = 0; i < texts.length; i++) {
    for (var j = i + 1; j < texts.length; j++) {
      // A badge's own number sits inside its circle, and a text inside the same badge group.
      if (texts[i].el.parentNode === texts[j].el.parentNode && texts[i].el.parentNode.classList.contains("step")) { continue; }
      if (hit(texts[i].b, texts[j].b)) { found.push({ kind: "text/text", a: name(texts[i].el), b: name(texts[j].el) }); }
    }
    for (var k = 0; k < badges.length; k++) {
      if (texts[i].el.parentNode === badges[k].el.parentNode) { continue; }
      if (hit(texts[i].b, badges[k].b)) { found.push({ kind: "text/badge", a: name(texts[i].el), b: "badge " + name(badges[k].el.parentNode) }); }
    }
    for (var q = 0; q < bands.length; q++) {
      if (texts[i].el.parentNode === bands[q].el.parentNode) { continue; }
      if (hit(texts[i].b, bands[q].b)) { found.push({ kind: "text/band", a: name(texts[i].el), b: "band " + bands[q].el.parentNode.getAttribute("data-state") }); }
    }
    for (var p = 0; p < sampled.length; p++) {
      var path = sampled[p];
      // A badge's number sits on its own edge by design.
      if (texts[i].el.closest(".edge") === path.el.parentNode && texts[i].el.closest(".step")) { continue; }
      if (!hit(texts[i].b, path.extent)) { continue; }
      for (var s = 0; s < path.points.length; s++) {
        if (inside(path.points[s], texts[i].b)) {
          found.push({ kind: "text/arrow", a: name(texts[i].el), b: (path.el.parentNode.getAttribute("data-from") || "") + " " + name(path.el.parentNode) });
          break;
        }
      }
    }
  }
  for (var a = 0; a < badges.length; a++) {
    for (var c = a + 1; c < badges.length; c++) {
      if (hit(badges[a].b, badges[c].b)) { found.push({ kind: "badge/badge", a: name(badges[a].el.parentNode), b: name(badges[c].el.parentNode) }); }
    }
  }
  results.push({ name: svg.parentNode.getAttribute("data-name"), texts: texts.length, paths: paths.length,
                 badges: badges.length, collisions: found });
 }
 var out = document.createElement("pre");
 out.id = "collisions";
 out.textContent = JSON.stringify(results);
 document.body.appendChild(out);
})();
