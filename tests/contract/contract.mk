# Contract checks (see tests/contract/validate.mjs): the machine-readable contracts in docs/ are checked
# with a real JSON Schema validator (ajv, draft 2020-12), installed from the committed lock file.
#
#   make contract-deps    npm ci in tests/contract when node_modules is missing or the lock file changed
#   make contract-docs    every schema compiles (strict) and its examples validate; every $ref in
#                         docs/asyncapi.yaml and docs/openapi.yaml resolves; every example there validates
#
# Real traffic is checked by tests/integration/test_integ_contract.c (it needs contract-deps first).

CONTRACT_DIR   := tests/contract
CONTRACT_STAMP := $(CONTRACT_DIR)/node_modules/.contract-deps.stamp

.PHONY: contract-deps contract-docs

contract-deps: $(CONTRACT_STAMP)

$(CONTRACT_STAMP): $(CONTRACT_DIR)/package.json $(CONTRACT_DIR)/package-lock.json
	$(call need_node,contract-deps,the contract tests need Node.js and npm)
	cd $(CONTRACT_DIR) && npm ci --no-audit --no-fund
	@touch $@

contract-docs: contract-deps
	node $(CONTRACT_DIR)/validate.mjs check-docs
