// Two people chat through the real page in headless Chromium: the
// standalone gateway serves it, each browser context logs in, and a
// message typed in one appears in the other (and back).
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

let server, browser, baseUrl, workDir;

before(async () => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), "parley-browser-"));
  server = spawn(need("PARLEY_STANDALONE_BIN"), [
    "--listen", "127.0.0.1:0", "--database", path.join(workDir, "chat.db"),
  ], { stdio: ["ignore", "pipe", "inherit"] });
  baseUrl = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("gateway did not report its address in 30 s")), 30_000);
    server.on("exit", (code) => reject(new Error(`gateway exited with ${code}`)));
    readline.createInterface({ input: server.stdout }).on("line", (line) => {
      const m = line.match(/listening on (http:\/\/\S+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
  });
  browser = await chromium.launch({
    executablePath: need("PARLEY_CHROMIUM"),
    // No sandbox as root; no background traffic to hosts this machine cannot reach.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  if (browser) await browser.close();
  if (server) server.kill("SIGTERM");
});

// What the page's Content Security Policy blocked, per page: the page must
// work under it, so anything blocked is a failure.
const blocked = new Map();

async function logIn(name) {
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

test("two browser contexts exchange messages through the page", async () => {
  const alice = await logIn("alice");
  const bob = await logIn("bob");

  await openChatWith(alice, "bob");
  await send(alice, "hello bob, from the browser");
  // Alice's own message is confirmed (no longer pending) once stored.
  await alice.waitForSelector("#messages .msg.mine:not(.pending) >> text=hello bob, from the browser", { timeout: 10_000 });

  // Bob sees the conversation appear and the message in it.
  await bob.click("#convs .conv >> text=alice", { timeout: 10_000 });
  await bob.waitForSelector("#messages .msg >> text=hello bob, from the browser", { timeout: 10_000 });

  await send(bob, "hi alice");
  await alice.waitForSelector("#messages .msg:not(.mine) >> text=hi alice", { timeout: 10_000 });

  assert.equal(await alice.textContent("#typing"), "", "a sent message ends the sender's typing notice");
  // Bob has the conversation open, so his page reported reading it: alice's
  // message shows read (✓✓); bob's own reply is read by alice in turn.
  await alice.waitForSelector("#messages .msg.mine:has-text('hello bob, from the browser') .tick.read", { timeout: 10_000 });
  await bob.waitForSelector("#messages .msg.mine:has-text('hi alice') .tick.read", { timeout: 10_000 });
  const aliceTexts = await alice.$$eval("#messages .msg", (els) => els.map((e) => e.textContent));
  assert.equal(aliceTexts.filter((t) => t.includes("hello bob, from the browser")).length, 1, "no duplicate");
  assert.equal(aliceTexts.filter((t) => t.includes("hi alice")).length, 1, "no duplicate");

  for (const page of [alice, bob]) assert.deepEqual(blocked.get(page), [], "nothing blocked by the page's CSP");

  // Edit, then recall: bob sees the text change, then go.
  alice.once("dialog", (d) => d.accept("hello bob, edited"));
  await alice.click("#messages .msg.mine:has-text('hello bob, from the browser') button.edit");
  await bob.waitForSelector("#messages .msg >> text=hello bob, edited (edited)", { timeout: 10_000 });
  await alice.click("#messages .msg.mine:has-text('hello bob, edited') button.recall");
  await bob.waitForSelector("#messages .msg.gone >> text=message recalled", { timeout: 10_000 });
  const bobTexts = await bob.$$eval("#messages .msg .body", (els) => els.map((e) => e.textContent));
  assert.deepEqual(bobTexts, ["message recalled", "hi alice"], "amendments show on their message, not as new ones");

  // A group: bob is invited, not added; he joins from the invitation.
  await alice.fill("#group-members", "bob");
  await alice.click("#new-group button");
  await alice.waitForSelector("#body:not([disabled])", { timeout: 10_000 });
  await bob.waitForSelector("#invites .invite >> text=alice, bob (from alice)", { timeout: 15_000 });
  await bob.click("#invites .invite button.accept");
  await bob.waitForSelector("#invites-box", { state: "hidden", timeout: 10_000 });
  await send(alice, "welcome to the group");
  await bob.waitForSelector("#messages .msg >> text=welcome to the group", { timeout: 10_000 });

  const shot = path.join(process.env.PARLEY_ARTIFACTS || workDir, "browser-chat.png");
  await alice.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);
});
