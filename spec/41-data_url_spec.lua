-- Message text arrives as data: URLs; core.data_url decodes both forms.
local core = require "ucwa.core"

describe("data: URLs", function()
  for _, case in ipairs{
    -- what, the URL, its text, its media type
    { "decodes percent-encoded text and keeps the media type",
      "data:text/plain;charset=utf-8,Hello%2C%20world%20%E2%9C%93", "Hello, world ✓", "text/plain;charset=utf-8" },
    { "decodes base64", "data:text/html;charset=utf-8;base64,PGI+aGk8L2I+", "<b>hi</b>", "text/html;charset=utf-8" },
    { "defaults the media type as RFC 2397 says", "data:,A%20B", "A B", "text/plain;charset=US-ASCII" },
    -- regression: two decoders (core.data_url and a Lua wrapper) read '+' differently;
    -- UCWA sends message text form-encoded, '+' for a space
    { "reads '+' as a space, as UCWA servers send message text", "data:text/plain;charset=utf-8,Hi+Tosh%0d%0a",
      "Hi Tosh\r\n", "text/plain;charset=utf-8" },
    { "reads %2B as a plus sign", "data:text/plain,1%2B1+=+2", "1+1 = 2", "text/plain" },
    { "keeps '+' a base64 digit", "data:text/plain;base64,Pz8+", "??>", "text/plain" },
    { "keeps decoded NUL bytes and other bytes as they are", "data:application/octet-stream,a%00b%FF",
      "a\0b\255", "application/octet-stream" },
  } do
    local what, url, want_text, want_mt = case[1], case[2], case[3], case[4]
    it(what, function()
      local text, mt = core.data_url(url)
      assert.equal(want_text, text)
      assert.equal(want_mt, mt)
    end)
  end

  it("says what is wrong with a bad one", function()
    local v, err = core.data_url("http://x/")
    assert.is_nil(v); assert.matches("not a data: URL", err)
    v, err = core.data_url("data:text/plain")
    assert.is_nil(v); assert.matches("without a comma", err)
    v, err = core.data_url("data:;base64,@@@@")
    assert.is_nil(v); assert.matches("invalid base64", err)
    assert.has_error(function() core.data_url(nil) end)
  end)
end)
