# install/pizza.mk - install and uninstall for operators; included by the
# top Makefile.  See install/README.md.
#
#   make install                               everything under /usr/local
#   make install PREFIX=/usr DESTDIR=/tmp/pkg  staged, for a package
#   make uninstall PREFIX=/usr DESTDIR=...     removes exactly what install put there
#   make test-install                          tests/install/test-install.sh
#
# Installed: the programs (the services as pizza-<service>, so that nothing
# generic lands on PATH), the man pages (phone-sim.1, pizza-admin.1,
# pizza-services.8 and a .so page per service, with their path strings set),
# the systemd units with @PREFIX@ filled in, the storefront (web/ with the one
# MQTT.js bundle it loads), commented example configuration, and the
# production broker configuration.
# Nothing is written to /etc or /var: install/README.md says what to create.

PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build

# Overridable on the command line only (not from the environment).
bindir      = $(PREFIX)/bin
man1dir     = $(PREFIX)/share/man/man1
man8dir     = $(PREFIX)/share/man/man8
pizzadocdir = $(PREFIX)/share/doc/pizza
unitdir     = $(PREFIX)/lib/systemd/system
webdir      = $(PREFIX)/share/pizza/web

# build/bin/<service> is installed as pizza-<service>; the others keep their names.
PIZZA_SERVICES := order-service order-executor order-history notifier
PIZZA_TOOLS    := phone-sim pizza-admin
PIZZA_PROGS    := $(PIZZA_SERVICES:%=pizza-%) $(PIZZA_TOOLS)
PIZZA_MAN1     := phone-sim.1 pizza-admin.1
PIZZA_SVC_MANS := $(PIZZA_SERVICES:%=pizza-%)
PIZZA_UNITS    := pizza-order-service.service pizza-order-executor@.service \
                  pizza-order-history.service pizza-notifier.service
PIZZA_EXAMPLES := order-service.conf order-executor.conf order-history.conf notifier.conf \
                  phone-sim.conf service.env
# The storefront: what web/index.html loads, and nothing else of node_modules.
PIZZA_WEB      := index.html app.js style.css node_modules/mqtt/dist/mqtt.min.js

# Every file install writes (without DESTDIR); uninstall removes these.
PIZZA_INSTALLED := $(PIZZA_PROGS:%=$(bindir)/%) \
                   $(PIZZA_MAN1:%=$(man1dir)/%) $(man8dir)/pizza-services.8 $(PIZZA_SVC_MANS:%=$(man8dir)/%.8) \
                   $(PIZZA_UNITS:%=$(unitdir)/%) \
                   $(PIZZA_WEB:%=$(webdir)/%) \
                   $(PIZZA_EXAMPLES:%=$(pizzadocdir)/examples/%) \
                   $(pizzadocdir)/mosquitto/mosquitto.conf $(pizzadocdir)/mosquitto/acl \
                   $(pizzadocdir)/mosquitto/README.md
# Directories that are ours alone: uninstall removes them when empty.
PIZZA_OWN_DIRS  := $(pizzadocdir)/examples $(pizzadocdir)/mosquitto $(pizzadocdir) \
                   $(webdir)/node_modules/mqtt/dist $(webdir)/node_modules/mqtt $(webdir)/node_modules \
                   $(webdir) $(PREFIX)/share/pizza

# Units: @PREFIX@ filled in.  Man pages: their path strings (.ds Pd, Pu, Pw),
# which read as the default prefix's in the source tree.
PIZZA_SUBST = sed -e 's|@PREFIX@/bin|$(bindir)|g' -e 's|@PREFIX@/share/pizza/web|$(webdir)|g' -e 's|@PREFIX@|$(PREFIX)|g'
PIZZA_MAN_SUBST = sed -e 's|^\.ds Pd .*|.ds Pd $(pizzadocdir)|' -e 's|^\.ds Pu .*|.ds Pu $(unitdir)|' \
                      -e 's|^\.ds Pw .*|.ds Pw $(webdir)|'

.PHONY: install uninstall test-install

install: all web-deps
	@case "$(PREFIX)" in /*) ;; *) echo "install: PREFIX must be an absolute path, not '$(PREFIX)'" >&2; exit 2;; esac
	@for s in $(PIZZA_SERVICES); do \
	  echo "install -D -m 755 $(BUILD)/bin/$$s $(DESTDIR)$(bindir)/pizza-$$s"; \
	  install -D -m 755 $(BUILD)/bin/$$s $(DESTDIR)$(bindir)/pizza-$$s || exit 1; \
	done
	@for p in $(PIZZA_TOOLS); do \
	  echo "install -D -m 755 $(BUILD)/bin/$$p $(DESTDIR)$(bindir)/$$p"; \
	  install -D -m 755 $(BUILD)/bin/$$p $(DESTDIR)$(bindir)/$$p || exit 1; \
	done
	@for m in $(PIZZA_MAN1); do \
	  echo "install -D -m 644 install/man/$$m $(DESTDIR)$(man1dir)/$$m"; \
	  install -D -m 644 install/man/$$m $(DESTDIR)$(man1dir)/$$m && \
	  $(PIZZA_MAN_SUBST) -i $(DESTDIR)$(man1dir)/$$m || exit 1; \
	done
	install -D -m 644 install/man/pizza-services.8 $(DESTDIR)$(man8dir)/pizza-services.8
	$(PIZZA_MAN_SUBST) -i $(DESTDIR)$(man8dir)/pizza-services.8
	@for m in $(PIZZA_SVC_MANS); do \
	  echo "install -D -m 644 /dev/null $(DESTDIR)$(man8dir)/$$m.8  (.so man8/pizza-services.8)"; \
	  install -D -m 644 /dev/null $(DESTDIR)$(man8dir)/$$m.8 && \
	  echo '.so man8/pizza-services.8' > $(DESTDIR)$(man8dir)/$$m.8 || exit 1; \
	done
	@for u in $(PIZZA_UNITS); do \
	  echo "install -D -m 644 install/systemd/$$u $(DESTDIR)$(unitdir)/$$u  (@PREFIX@: $(PREFIX))"; \
	  install -D -m 644 install/systemd/$$u $(DESTDIR)$(unitdir)/$$u && \
	  $(PIZZA_SUBST) -i $(DESTDIR)$(unitdir)/$$u || exit 1; \
	done
	@for w in $(PIZZA_WEB); do \
	  echo "install -D -m 644 web/$$w $(DESTDIR)$(webdir)/$$w"; \
	  install -D -m 644 web/$$w $(DESTDIR)$(webdir)/$$w || exit 1; \
	done
	@for e in $(PIZZA_EXAMPLES); do \
	  echo "install -D -m 644 install/examples/$$e $(DESTDIR)$(pizzadocdir)/examples/$$e"; \
	  install -D -m 644 install/examples/$$e $(DESTDIR)$(pizzadocdir)/examples/$$e || exit 1; \
	done
	install -D -m 644 broker-config/production/mosquitto.conf $(DESTDIR)$(pizzadocdir)/mosquitto/mosquitto.conf
	install -D -m 644 broker-config/acl $(DESTDIR)$(pizzadocdir)/mosquitto/acl
	install -D -m 644 broker-config/production/README.md $(DESTDIR)$(pizzadocdir)/mosquitto/README.md
	@echo "installed under $(DESTDIR)$(PREFIX); next: install/README.md (/etc/pizza, then enable the units)"

uninstall:
	rm -f $(addprefix $(DESTDIR),$(PIZZA_INSTALLED))
	@for d in $(addprefix $(DESTDIR),$(PIZZA_OWN_DIRS)); do \
	  if [ -d "$$d" ]; then rmdir "$$d" 2>/dev/null && echo "rmdir $$d" || echo "kept $$d (not empty)"; fi; \
	done; true

test-install: all
	@MAKE="$(MAKE)" tests/install/test-install.sh
