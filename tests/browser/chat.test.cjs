// Two people chat through the real page in headless Chromium, in both
// modes: on the standalone chat, and on the Kafka-mode chat with each
// person on a different gateway (presence, typing, reads and amendments
// then travel between gateways through Kafka). Each browser context logs
// in, and what one does shows in the other.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const readline = require("node:readline");

const { chromium } = require(need("PARLEY_PLAYWRIGHT"));

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run through scripts/test.sh (scripts/env/browser.sh env)`);
  return value;
}

let browser, workDir;
const children = [];

// Start `bin` and collect the addresses it reports on stdout (`pattern`'s
// first group), `count` of them within `ms`.
function spawnReporting(bin, args, pattern, count, ms) {
  const child = spawn(bin, args, { stdio: ["pipe", "pipe", "inherit"] });
  children.push(child);
  const urls = new Promise((resolve, reject) => {
    const found = [];
    const timer = setTimeout(() => reject(new Error(`${path.basename(bin)} reported ${found.length} of ${count} addresses in ${ms} ms`)), ms);
    child.on("exit", (code) => reject(new Error(`${path.basename(bin)} exited with ${code}`)));
    readline.createInterface({ input: child.stdout }).on("line", (line) => {
      const m = line.match(pattern);
      if (m) found.push(m[1]);
      if (found.length === count) { clearTimeout(timer); resolve(found); }
    });
  });
  return urls;
}

before(async () => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), "parley-browser-"));
  browser = await chromium.launch({
    executablePath: need("PARLEY_CHROMIUM"),
    // No sandbox as root; no background traffic to hosts this machine cannot reach.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  if (browser) await browser.close();
  // SIGTERM: each stops its own processes first (the Kafka chat its
  // gateways and consumers, and drops its topics); bounded wait.
  await Promise.all(children.map((child) => new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    const timer = setTimeout(() => { child.kill("SIGKILL"); resolve(); }, 30_000);
    child.on("exit", () => { clearTimeout(timer); resolve(); });
    child.kill("SIGTERM");
  })));
});

// What the page's Content Security Policy blocked, per page: the page must
// work under it, so anything blocked is a failure.
const blocked = new Map();

async function logIn(baseUrl, name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  blocked.set(page, []);
  page.on("console", (msg) => {
    if (/Content Security Policy/i.test(msg.text())) blocked.get(page).push(msg.text());
  });
  const response = await page.goto(baseUrl + "/");
  assert.match(response.headers()["content-security-policy"] || "", /frame-ancestors 'none'/);
  await page.fill("#login-name", name);
  await page.click("#login button");
  await page.waitForSelector("#status.online", { timeout: 15_000 });
  assert.equal(await page.isVisible("#login"), false, "the log-in form goes away after log-in");
  return page;
}

async function openChatWith(page, other) {
  await page.fill("#dm-user", other);
  await page.click("#new-dm button");
  await page.waitForSelector("#body:not([disabled])", { timeout: 10_000 });
}

async function send(page, text) {
  await page.fill("#body", text);
  await page.click("#send");
}

// What each mode runs: one person on each of `urls`, waits up to `wait` ms.
async function conversation(urls, wait) {
  const [urlA, urlB] = urls;
  const alice = await logIn(urlA, "alice");
  let bob = await logIn(urlB, "bob");
  const w = { timeout: wait };

  await openChatWith(alice, "bob");
  await send(alice, "hello bob, from the browser");
  // Alice's own message is confirmed (no longer pending) once stored.
  await alice.waitForSelector("#messages .msg.mine:not(.pending) >> text=hello bob, from the browser", w);

  // Bob sees the conversation appear and the message in it.
  await bob.click("#convs .conv >> text=alice", w);
  await bob.waitForSelector("#messages .msg >> text=hello bob, from the browser", w);

  // Typing shows on the other side before the message is sent.
  await bob.fill("#body", "hi alice");
  await alice.waitForSelector("#typing >> text=bob is typing…", w);
  await bob.click("#send");
  await alice.waitForSelector("#messages .msg:not(.mine) >> text=hi alice", w);

  assert.equal(await alice.textContent("#typing"), "", "a sent message ends the sender's typing notice");
  // Bob has the conversation open, so his page reported reading it: alice's
  // message shows read (✓✓); bob's own reply is read by alice in turn.
  await alice.waitForSelector("#messages .msg.mine:has-text('hello bob, from the browser') .tick.read", w);
  await bob.waitForSelector("#messages .msg.mine:has-text('hi alice') .tick.read", w);
  const aliceTexts = await alice.$$eval("#messages .msg", (els) => els.map((e) => e.textContent));
  assert.equal(aliceTexts.filter((t) => t.includes("hello bob, from the browser")).length, 1, "no duplicate");
  assert.equal(aliceTexts.filter((t) => t.includes("hi alice")).length, 1, "no duplicate");

  for (const page of [alice, bob]) assert.deepEqual(blocked.get(page), [], "nothing blocked by the page's CSP");

  // Edit, then recall: bob sees the text change, then go.
  alice.once("dialog", (d) => d.accept("hello bob, edited"));
  await alice.click("#messages .msg.mine:has-text('hello bob, from the browser') button.edit");
  await bob.waitForSelector("#messages .msg >> text=hello bob, edited (edited)", w);
  await alice.click("#messages .msg.mine:has-text('hello bob, edited') button.recall");
  await bob.waitForSelector("#messages .msg.gone >> text=message recalled", w);
  const bobTexts = await bob.$$eval("#messages .msg .body", (els) => els.map((e) => e.textContent));
  assert.deepEqual(bobTexts, ["message recalled", "hi alice"], "amendments show on their message, not as new ones");

  // Presence: now that they are contacts, bob leaving and coming back shows
  // on alice's page, and bob's page lists alice online from its hello.
  await bob.context().close();
  await alice.waitForSelector("#online .conv >> text=bob", { state: "detached", timeout: wait });
  bob = await logIn(urlB, "bob");
  await alice.waitForSelector("#online .conv >> text=bob", w);
  await bob.waitForSelector("#online .conv >> text=alice", w);

  // Unread: a message in a conversation bob has not opened shows a count.
  await send(alice, "are you back?");
  await bob.waitForSelector("#convs .conv:has-text('alice') .badge >> text=1", w);

  // A group: bob is invited, not added; he joins from the invitation.
  await alice.fill("#group-members", "bob");
  await alice.click("#new-group button");
  await alice.waitForSelector("#body:not([disabled])", w);
  await bob.waitForSelector("#invites .invite >> text=alice, bob (from alice)", w);
  await bob.click("#invites .invite button.accept");
  await bob.waitForSelector("#invites-box", { state: "hidden", timeout: wait });
  await send(alice, "welcome to the group");
  await bob.waitForSelector("#messages .msg >> text=welcome to the group", w);
  return alice;
}

async function screenshot(page, name) {
  const shot = path.join(process.env.PARLEY_ARTIFACTS || workDir, name);
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);
}

test("standalone: two browser contexts chat through the page", async () => {
  const [url] = await spawnReporting(need("PARLEY_STANDALONE_BIN"),
    ["--listen", "127.0.0.1:0", "--database", path.join(workDir, "chat.db")],
    /listening on (http:\/\/\S+)/, 1, 30_000);
  await screenshot(await conversation([url, url], 10_000), "browser-chat.png");
});

test("kafka: the same on two gateways, one person on each", async () => {
  // Starts two gateways, two storage and two push processes on the
  // environment's Kafka and PostgreSQL; reports once both carry messages.
  const urls = await spawnReporting(need("PARLEY_KAFKA_CHAT_BIN"), [], /^gateway (http:\/\/\S+)/, 2, 240_000);
  assert.notEqual(urls[0], urls[1], "two gateways");
  await screenshot(await conversation(urls, 30_000), "browser-chat-kafka.png");
});
