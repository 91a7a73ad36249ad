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
	$(call need_node,web-deps,the storefront's MQTT.js bundle is installed with Node.js and npm)
	cd $(WEB_DIR) && npm ci --no-audit --no-fund
	@test -s $(WEB_DIR)/node_modules/mqtt/dist/mqtt.min.js || { echo "web-deps: $(WEB_DIR)/node_modules/mqtt/dist/mqtt.min.js is missing after npm ci"; exit 1; }
	@touch $@
