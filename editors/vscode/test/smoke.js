// Runs this extension as VS Code would load it, with the real
// vscode-languageclient (from `npm ci`) against the real `nnc lsp` on the
// PATH, but with VS Code's own API replaced by a recorder: what the
// client asks of VS Code is recorded and mostly answered with more
// recorders; the few answers the client needs to go on are given below.
// VS Code itself cannot be downloaded where this was written.
//
// Usage: node test/smoke.js FILE.nn   (a file with a shape error and an
// unformatted line). Prints one JSON report on stdout: the providers the
// client registered from the server's capabilities, the diagnostics it
// published, the formatting edits and a hover it got.
const Module = require("module");
const path = require("path");
const fs = require("fs");

const file = path.resolve(process.argv[2]);
const text = fs.readFileSync(file, "utf8");
const report = { registered: [], diagnostics: null, formatting: null, hover: null, log: [] };
const handlers = {}; // event name -> the client's listener
const providers = {}; // registration -> provider object

function uriOf(p) {
  return {
    scheme: "file",
    fsPath: p,
    path: p,
    toString: () => `file://${p}`,
    toJSON: () => `file://${p}`,
  };
}
const document = {
  uri: uriOf(file),
  fileName: file,
  languageId: "nn",
  version: 1,
  isClosed: false,
  getText: () => text,
  lineCount: text.split("\n").length,
};

// Answers the client needs; everything else is a recorder.
const fixed = {
  "vscode.version": "1.95.0",
  "vscode.workspace.getConfiguration": () => ({ get: () => undefined, has: () => false }),
  "vscode.workspace.textDocuments": [],
  "vscode.workspace.workspaceFolders": undefined,
  "vscode.languages.match": () => 10,
  "vscode.Uri.parse": (s) => uriOf(s.replace(/^file:\/\//, "")),
  "vscode.Uri.file": (p) => uriOf(p),
  "vscode.languages.createDiagnosticCollection": () => ({
    set: (uri, diags) => {
      if (diags && diags.length > 0) report.diagnostics = diags;
    },
    delete: () => {},
    clear: () => {},
    dispose: () => {},
    forEach: () => {},
    get: () => [],
    has: () => false,
  }),
  "vscode.window.createOutputChannel": () => ({
    append: (t) => report.log.push(t),
    appendLine: (t) => report.log.push(t),
    replace: () => {},
    clear: () => {},
    show: () => {},
    hide: () => {},
    dispose: () => {},
  }),
  "vscode.window.showErrorMessage": (m) => {
    report.log.push(`error: ${m}`);
    return Promise.resolve(undefined);
  },
  "vscode.window.showWarningMessage": (m) => {
    report.log.push(`warning: ${m}`);
    return Promise.resolve(undefined);
  },
  "vscode.window.showInformationMessage": () => Promise.resolve(undefined),
};

fixed["vscode.CancellationTokenSource"] = class {
  constructor() {
    this.token = { isCancellationRequested: false, onCancellationRequested: () => ({ dispose() {} }) };
  }
  cancel() {
    this.token.isCancellationRequested = true;
  }
  dispose() {}
};

// VS Code's value classes: plain records of their arguments.
for (const cls of ["Range", "Position", "TextEdit", "Hover", "MarkdownString", "Diagnostic", "Location"]) {
  fixed[`vscode.${cls}`] = class {
    constructor(...args) {
      this.kind = cls;
      this.args = args;
      if (cls === "MarkdownString") this.value = args[0] || "";
      if (cls === "Diagnostic") [this.range, this.message, this.severity] = args;
      if (cls === "Hover") this.contents = args[0];
    }
    appendMarkdown(s) {
      this.value = (this.value || "") + s;
      return this;
    }
    appendCodeblock(s) {
      this.value = (this.value || "") + s;
      return this;
    }
  };
}

function recorder(name) {
  return new Proxy(function () {}, {
    get(_, prop) {
      const key = `${name}.${String(prop)}`;
      if (key in fixed) return fixed[key];
      if (prop === "then") return undefined; // not a promise
      if (prop === Symbol.toPrimitive) return () => name;
      if (prop === Symbol.iterator) return function* () {};
      return recorder(key);
    },
    apply(_, __, args) {
      const m = name.match(/^vscode\.languages\.register(\w+)Provider$/);
      if (m) {
        report.registered.push(m[1]);
        providers[m[1]] = args[1];
      }
      const e = name.match(/^vscode\.workspace\.(onDid\w+)$/);
      if (e) handlers[e[1]] = args[0];
      return recorder(`${name}()`);
    },
    construct(_, args) {
      return recorder(`new ${name}`);
    },
  });
}

const original = Module._load;
Module._load = function (request) {
  if (request === "vscode") return recorder("vscode");
  return original.apply(this, arguments);
};

const token = { isCancellationRequested: false, onCancellationRequested: () => ({ dispose() {} }) };
const wait = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const extension = require(path.join(__dirname, "..", "extension.js"));
  await extension.activate();
  handlers.onDidOpenTextDocument(document);
  for (let i = 0; i < 100 && !report.diagnostics; i++) await wait(50);
  const edits = await providers.DocumentFormattingEdit.provideDocumentFormattingEdits(
    document,
    { tabSize: 4, insertSpaces: true },
    token
  );
  report.formatting = (edits || []).map((e) => ({ range: e.args[0], text: e.args[1] }));
  const position = { line: 2, character: 16 };
  const hover = await providers.Hover.provideHover(document, position, token);
  report.hover = hover ? JSON.stringify(hover.contents) : null;
  report.diagnostics = (report.diagnostics || []).map((d) => ({
    message: d.message,
    line: d.range.args[0].args ? d.range.args[0].args[0] : d.range.args[0],
    code: typeof d.code === "object" ? d.code.value : d.code,
  }));
  await extension.deactivate();
  console.log(JSON.stringify(report));
}

main().then(
  () => process.exit(0),
  (e) => {
    console.log(JSON.stringify({ ...report, failure: String(e && e.stack) }));
    process.exit(1);
  }
);
