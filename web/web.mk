# The storefront order-service serves at / (web/index.html, app.js, style.css;
# see backend/order-service/web.h).  Only the MQTT.js browser bundle comes from
# npm, pinned in web/package.json and installed from the committed lock file.
#
#   make web-deps    npm ci in web/ when node_modules is missing or the lock file changed
#                    (gives web/node_modules/mqtt/dist/mqtt.min.js, served as /mqtt.min.js)

WEB_DIR   := web
WEB_STAMP := $(WEB_DIR)/node_modules/.web-deps.stamp

.PHONY: web-deps

web-deps: $(WEB_STAMP)

$(WEB_STAMP): $(WEB_DIR)/package.json $(WEB_DIR)/package-lock.json
	@if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "web-deps: installing Node.js and npm (Debian packages)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null || exit 1; \
	  else \
	    echo "web-deps: the storefront's MQTT.js bundle is installed with npm, which is not installed."; \
	    echo "install it with:  sudo apt-get install -y nodejs npm"; \
	    exit 1; \
	  fi; \
	fi
	cd $(WEB_DIR) && npm ci --no-audit --no-fund
	@test -s $(WEB_DIR)/node_modules/mqtt/dist/mqtt.min.js || { echo "web-deps: $(WEB_DIR)/node_modules/mqtt/dist/mqtt.min.js is missing after npm ci"; exit 1; }
	@touch $@
