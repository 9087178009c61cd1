-- Message text arrives as data: URLs; core.data_url decodes both forms.
local core = require "ucwa.core"

describe("data: URLs", function()
  it("decodes percent-encoded text and keeps the media type", function()
    local text, mt = core.data_url("data:text/plain;charset=utf-8,Hello%2C%20world%20%E2%9C%93")
    assert.equal("Hello, world ✓", text)
    assert.equal("text/plain;charset=utf-8", mt)
  end)

  it("decodes base64", function()
    local text, mt = core.data_url("data:text/html;charset=utf-8;base64,PGI+aGk8L2I+")
    assert.equal("<b>hi</b>", text)
    assert.equal("text/html;charset=utf-8", mt)
  end)

  it("defaults the media type as RFC 2397 says", function()
    local text, mt = core.data_url("data:,A%20B")
    assert.equal("A B", text)
    assert.equal("text/plain;charset=US-ASCII", mt)
  end)

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
