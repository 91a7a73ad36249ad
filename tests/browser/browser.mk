# Browser tests (see tests/browser/storefront.mjs): the storefront driven in
# Debian's chromium through playwright-core, installed from the committed lock
# file (no browser download: playwright-core uses /usr/bin/chromium).
#
#   make browser-deps    npm ci in tests/browser when node_modules is missing or the lock
#                        file changed, and chromium (apt-get, as root) when /usr/bin/chromium is missing
#
# The test itself is tests/integration/test_integ_browser.c (it needs web-deps and browser-deps first).

BROWSER_DIR   := tests/browser
BROWSER_STAMP := $(BROWSER_DIR)/node_modules/.browser-deps.stamp

.PHONY: browser-deps

browser-deps: $(BROWSER_STAMP)
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "browser-deps: installing chromium (Debian package)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || exit 1; \
	  else \
	    echo "browser-deps: the browser tests need Debian's chromium (/usr/bin/chromium), which is not installed."; \
	    echo "install it with:  sudo apt-get install -y chromium"; \
	    exit 1; \
	  fi; \
	fi

$(BROWSER_STAMP): $(BROWSER_DIR)/package.json $(BROWSER_DIR)/package-lock.json
	$(call need_node,browser-deps,the browser tests need Node.js and npm)
	cd $(BROWSER_DIR) && npm ci --no-audit --no-fund
	@touch $@
