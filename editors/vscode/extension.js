// Starts `nnc lsp` for .nn files. The server does the work: diagnostics,
// hover, definitions, references, outline, completion, signature help.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate() {
  const command = vscode.workspace.getConfiguration("nnc").get("path") || "nnc";
  const server = { command, args: ["lsp"] };
  client = new LanguageClient(
    "nnc",
    "nnc",
    { run: server, debug: server },
    {
      documentSelector: [
        { scheme: "file", language: "nn" },
        { scheme: "untitled", language: "nn" },
      ],
    }
  );
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
