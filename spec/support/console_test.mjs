// The browser test of ucwa-sim's console (run by spec/3j-sim_console_spec.lua):
// Debian's headless Chromium, driven by playwright-core, plays the people
// against a simulator where a bot is running. Two scenarios:
//   meeting  (examples/meeting_bot.lua) the people in the demo meeting
//   im       (examples/im_bot.lua) Alice IMs the bot, types; Bob goes Away
//   CONSOLE_BASE     the simulator's control base (http://127.0.0.1:PORT)
//   CONSOLE_SCENARIO meeting (the default) or im
//   CONSOLE_SHOTS    the folder for console.png (1280x800) and console-phone.png
//                    (390x844); console-im.png and console-im-phone.png for im
// Prints one line per step; exits 1 on a failed step or on any error in the
// browser's console log or any page error.
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const base = process.env.CONSOLE_BASE;
const shots = process.env.CONSOLE_SHOTS || ".";
const scenario = process.env.CONSOLE_SCENARIO || "meeting";
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

// Screenshots at a desk's size and a phone's, the phone's without sideways scrolling.
async function screenshots(page, name, inView) {
  await page.evaluate(() => { document.activeElement.blur(); window.scrollTo(0, 0); });
  await page.screenshot({ path: path.join(shots, name + ".png") });
  await page.setViewportSize({ width: 390, height: 844 });
  await inView.scrollIntoViewIfNeeded();
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  if (wide > 390) throw new Error("the page is " + wide + " px wide in a 390 px window");
  await page.screenshot({ path: path.join(shots, name + "-phone.png") });
  await page.setViewportSize({ width: 1280, height: 800 });
  step("screenshots at 1280x800 and 390x844 (no sideways scrolling)");
}

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
  await (scenario === "im" ? imScenario(page) : meetingScenario(page));
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

// The people in the demo meeting, with examples/meeting_bot.lua.
async function meetingScenario(page) {
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

  await screenshots(page, "console", talk);

  await meeting.getByRole("button", { name: "End the meeting" }).click();
  await page.getByRole("article", { name: /Demo meeting \(DEMO1\): ended/ }).waitFor();
  await attendees.getByText("No attendee in.").waitFor();
  step("ended the meeting: nobody is left in it");
}

// Alice IMs examples/im_bot.lua and types; Bob goes Away. Every control is
// used from the keyboard.
async function imScenario(page) {
  const people = page.getByRole("region", { name: "People" });
  const choice = (name) => people.getByRole("combobox", { name, exact: true });
  const presenceOf = (user) => people.locator(`#people li[data-user="${user}"] .presence`);
  await presenceOf("bot@contoso.com").filter({ hasText: "Online" }).waitFor({ timeout: 30000 });
  step("the bot signed in: Online in the people's presence");

  await choice("As").selectOption({ label: "Alice Adams (alice@contoso.com)" });
  const to = await choice("To").evaluate((e) => e.selectedOptions[0].textContent);
  if (to !== "Meeting Bot (bot@contoso.com) · bot") throw new Error("IMs go to " + to + ", not to the bot first");
  await people.getByRole("textbox", { name: "Instant message" }).fill("hello");
  await people.getByRole("textbox", { name: "Instant message" }).press("Enter");
  const im = people.getByRole("article", { name: /^IM: Alice Adams and Meeting Bot \(IM\d+\)$/ });
  const said = im.getByRole("list", { name: "Messages" }).locator("li");
  await said.nth(1).waitFor({ timeout: 30000 });
  const lines = await said.evaluateAll((items) => items.map((li) => li.querySelector("strong").textContent + " " +
    li.querySelector(".text").textContent));
  if (lines[0] !== "Alice Adams: hello" || !/^Meeting Bot \(bot\): Hello, .+!$/.test(lines[1])) {
    throw new Error("the IM shows " + JSON.stringify(lines));
  }
  await im.getByText("connected").waitFor();
  if (await page.getByRole("article", { name: /\(IM\d+\)/ }).count() !== 1) {
    throw new Error("the IM session is shown as a meeting too");
  }
  step("Alice said hello to the bot and the bot's answer appeared in the IM, in order");

  await people.getByRole("button", { name: "Start typing" }).focus();
  await page.keyboard.press("Enter");
  await im.getByText("Alice Adams is typing…").waitFor();
  step("Alice types, and the IM shows it");

  await choice("User").selectOption({ label: "Bob Brown (bob@contoso.com)" });
  await choice("Availability").focus();
  await page.keyboard.press("A"); // the first choice that starts with A
  if (await choice("Availability").inputValue() !== "Away") throw new Error("the keyboard did not pick Away");
  await page.keyboard.press("Tab");
  if (await people.getByRole("button", { name: "Set presence" }).evaluate((e) => e !== document.activeElement)) {
    throw new Error("Tab from Availability did not reach Set presence");
  }
  await page.keyboard.press("Enter");
  await presenceOf("bob@contoso.com").filter({ hasText: "Away" }).waitFor();
  await page.locator("#said").getByText("Bob Brown (bob@contoso.com) is Away").waitFor();
  step("Bob's presence set to Away from the keyboard, and shown");

  await screenshots(page, "console-im", im);
}
