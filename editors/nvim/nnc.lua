-- Attaches `nnc lsp` to .nn files in Neovim's built-in LSP client
-- (Neovim 0.7 or later). Put `nnc` on your PATH, then either source this
-- file from your init.lua (`dofile("/path/to/nnc/editors/nvim/nnc.lua")`)
-- or copy it into ~/.config/nvim/plugin/.
--
-- Diagnostics appear as you type; `:lua vim.diagnostic.setqflist()` lists
-- them. `K` shows the shape of the layer or tensor under the cursor, `gd`
-- goes to its definition, `gr` lists its uses. `:NncFormat` formats the
-- buffer as `nnc fmt` does.

vim.api.nvim_create_autocmd({ "BufRead", "BufNewFile" }, {
  pattern = "*.nn",
  callback = function(args)
    vim.bo[args.buf].filetype = "nn"
  end,
})

-- One server for the whole editor session, attached to every .nn buffer.
local client_id = nil

vim.api.nvim_create_autocmd("FileType", {
  pattern = "nn",
  callback = function(args)
    if client_id == nil or vim.lsp.get_client_by_id(client_id) == nil then
      client_id = vim.lsp.start_client({
        name = "nnc",
        cmd = { "nnc", "lsp" },
        root_dir = vim.fn.getcwd(),
      })
    end
    if client_id ~= nil then
      vim.lsp.buf_attach_client(args.buf, client_id)
      -- Shapes, parameters and MACs of what is under the cursor; where
      -- it is defined; where it is used.
      vim.keymap.set("n", "K", vim.lsp.buf.hover, { buffer = args.buf })
      vim.keymap.set("n", "gd", vim.lsp.buf.definition, { buffer = args.buf })
      vim.keymap.set("n", "gr", vim.lsp.buf.references, { buffer = args.buf })
      -- `vim.lsp.buf.format` from Neovim 0.8, `formatting_sync` before.
      vim.api.nvim_buf_create_user_command(args.buf, "NncFormat", function()
        if vim.lsp.buf.format then
          vim.lsp.buf.format({ bufnr = args.buf, timeout_ms = 5000 })
        else
          vim.lsp.buf.formatting_sync(nil, 5000)
        end
      end, { desc = "Format the buffer with nnc fmt" })
    end
  end,
})
