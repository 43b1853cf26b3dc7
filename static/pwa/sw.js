/* Walkout service worker (served at /sw.js, scope "/").
 *
 * Only the entry pass page (/gates/pass/) works offline: network first; each pass page the server gives is kept
 * (one copy, replaced each time); offline, that copy is served and the page itself shows the newest pass it saved
 * for what is left of that pass's validity window, then marks it expired (templates/gates/pass.html). Nothing else
 * is cached: carts, receipts and accounts always come from the server. Logging out deletes the copy (base.html).
 */
"use strict";
var CACHE = "walkout-pass-v1";
var PASS_PATH = "/gates/pass/";

self.addEventListener("install", function () { self.skipWaiting(); });

self.addEventListener("activate", function (event) {
  event.waitUntil(caches.keys().then(function (names) {
    return Promise.all(names.filter(function (n) { return n.indexOf("walkout-") === 0 && n !== CACHE; })
      .map(function (n) { return caches.delete(n); }));
  }).then(function () { return self.clients.claim(); }));
});

function passPage(request) {
  return caches.open(CACHE).then(function (cache) {
    return fetch(request).then(function (response) {
      if (response.ok && !response.redirected && response.headers.get("X-Walkout-Pass") === "1") {
        cache.put(PASS_PATH, response.clone());
      } else if (response.redirected || response.status === 403) {
        cache.delete(PASS_PATH);              // logged out or no card: the old pass must not come back offline
      }
      return response;
    }).catch(function () {
      return cache.match(PASS_PATH).then(function (cached) {
        return cached || new Response(
          "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width,initial-scale=1'>" +
          "<title>Offline · Walkout</title><body style='font-family:system-ui;padding:2rem'>" +
          "<h1>You are offline</h1><p>Open your entry pass once while you are online; it then works offline " +
          "for as long as the code is valid.</p></body>",
          {status: 503, headers: {"Content-Type": "text/html; charset=utf-8"}});
      });
    });
  });
}

self.addEventListener("fetch", function (event) {
  var request = event.request;
  if (request.method !== "GET") return;
  var url = new URL(request.url);
  if (url.origin !== self.location.origin || url.pathname !== PASS_PATH || request.mode !== "navigate") return;
  event.respondWith(passPage(request));
});
