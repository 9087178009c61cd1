// The browser test of ucwa-sim's console (run by spec/3j-sim_console_spec.lua):
// Debian's headless Chromium, driven by playwright-core, plays the people in
// the meeting against a simulator where the demo bot is running.
//   CONSOLE_BASE  the simulator's control base (http://127.0.0.1:PORT)
//   CONSOLE_SHOTS the folder for console.png (1280x800) and console-phone.png (390x844)
// Prints one line per step; exits 1 on a failed step or on any error in the
// browser's console log or any page error.
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const base = process.env.CONSOLE_BASE;
const shots = process.env.CONSOLE_SHOTS || ".";
if (!base) throw new Error("CONSOLE_BASE is not set");

const problems = [];
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "ucwa-console-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  // no network but the simulator: nothing in the background, no sync, no QUIC
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"],
  viewport: { width: 1280, height: 800 },
});

function step(text) { console.log("ok - " + text); }

let failed = null;
let page;
try {
  page = context.pages()[0] || await context.newPage();
  page.on("console", (msg) => { if (msg.type() === "error") problems.push("console error: " + msg.text()); });
  page.on("pageerror", (err) => problems.push("page error: " + err.message));
  page.setDefaultTimeout(20000);

  await page.goto(base + "/_sim/console");
  await page.getByText("Live: changes appear as they happen.").waitFor();
  await page.getByText(/listens only where the control API listens \(loopback addresses only\)/).waitFor();
  step("the console is live and says where it listens");

  const meeting = page.getByRole("article", { name: /Demo meeting \(DEMO1\)/ });
  const lobby = meeting.getByRole("list", { name: "Lobby" });
  const attendees = meeting.getByRole("list", { name: "Attendees" });
  const leaders = meeting.getByRole("list", { name: "Leaders" });
  const talk = meeting.getByRole("list", { name: "Conversation" });
  const who = (list, name) => list.locator(".who", { hasText: name });
  await who(lobby, "Meeting Bot").waitFor({ timeout: 30000 });
  step("the bot waits in the lobby");

  const join = async (user) => {
    await meeting.getByLabel("Join as (user)").fill(user);
    await meeting.getByRole("button", { name: "Join" }).click();
  };
  await join("alice@contoso.com");
  await who(leaders, "Alice Adams").waitFor();
  await join("carol@contoso.com");
  await who(lobby, "Carol").waitFor();
  await lobby.getByRole("button", { name: "Admit Carol" }).click();
  await who(attendees, "Carol").waitFor();
  step("Alice joined as organiser, Carol was admitted");

  // by keyboard: focus the button, press Enter
  await lobby.getByRole("button", { name: "Admit Meeting Bot" }).focus();
  await page.keyboard.press("Enter");
  await who(attendees, "Meeting Bot").waitFor();
  if (await meeting.getByLabel("Speak as").evaluate((e) => e !== document.activeElement)) {
    throw new Error("the focus did not move on to Speak as after the last admission");
  }
  if (await who(lobby, "Meeting Bot").count() !== 0) throw new Error("the bot is still in the lobby");
  step("admitted: the bot moved from the lobby to the attendees");
  await talk.getByText("Hello, room!").waitFor();
  step("the bot greeted the room");

  await meeting.getByLabel("Speak as").selectOption({ label: "Carol" });
  await meeting.getByRole("button", { name: "Start typing" }).click();
  await attendees.getByText("typing…").waitFor();
  step("Carol types, and the console shows it");
  await meeting.getByLabel("Message", { exact: true }).fill("!who");
  await meeting.getByLabel("Message", { exact: true }).press("Enter");
  await talk.getByText("!who", { exact: true }).waitFor();
  await talk.getByText("In the room: Alice Adams, Carol, Meeting Bot").waitFor();
  step("Carol said !who and the bot's answer appeared");

  const app = page.getByRole("article", { name: /^Application \d+: Meeting Bot/ });
  const channel = app.getByRole("list", { name: /Event channel of application/ });
  await page.getByRole("button", { name: "Drop the next P-GET" }).click();
  await page.locator("#armed").getByText("drop the next 1 P-GET answer(s)").waitFor();
  step("armed: drop the next P-GET");
  await meeting.getByLabel("Speak as").selectOption({ label: "Alice Adams" });
  await meeting.getByLabel("Message", { exact: true }).fill("Still with us?");
  await meeting.getByRole("button", { name: "Say" }).click();
  await channel.locator('li[data-what="dropped"]').waitFor();
  await channel.locator('li[data-what="dropped"] ~ li[data-what="again"]').waitFor();
  await page.locator("#armed").getByText("Nothing armed.").waitFor();
  await channel.locator('li[data-what="again"] ~ li[data-what="held"]').waitFor();
  step("the P-GET answer was dropped and the channel recovered: the same batch sent again, a P-GET held");

  await app.getByRole("button", { name: "Resync its channel" }).click();
  await channel.locator('li[data-what="resync"]').waitFor();
  await channel.locator('li[data-what="resync"] ~ li[data-what="held"]').waitFor();
  step("resync by a click: the bot followed it and holds a P-GET again");

  await page.evaluate(() => { document.activeElement.blur(); window.scrollTo(0, 0); });
  await page.screenshot({ path: path.join(shots, "console.png") });
  await page.setViewportSize({ width: 390, height: 844 });
  await meeting.getByRole("list", { name: "Conversation" }).scrollIntoViewIfNeeded();
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  if (wide > 390) throw new Error("the page is " + wide + " px wide in a 390 px window");
  await page.screenshot({ path: path.join(shots, "console-phone.png") });
  step("screenshots at 1280x800 and 390x844 (no sideways scrolling)");

  await page.setViewportSize({ width: 1280, height: 800 });
  await meeting.getByRole("button", { name: "End the meeting" }).click();
  await page.getByRole("article", { name: /Demo meeting \(DEMO1\): ended/ }).waitFor();
  await attendees.getByText("No attendee in.").waitFor();
  step("ended the meeting: nobody is left in it");
} catch (err) {
  failed = err;
  await page?.screenshot({ path: path.join(shots, "console-failure.png") }).catch(() => {});
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
for (const p of problems) console.log("not ok - " + p);
if (failed) console.log("not ok - " + failed.message);
process.exit(failed || problems.length ? 1 : 0);
