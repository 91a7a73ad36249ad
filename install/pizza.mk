# install/pizza.mk - install and uninstall for operators; included by the
# top Makefile.  See install/README.md.
#
#   make install                               everything under /usr/local
#   make install PREFIX=/usr DESTDIR=/tmp/pkg  staged, for a package
#   make uninstall PREFIX=/usr DESTDIR=...     removes exactly what install put there
#   make test-install                          tests/install/test-install.sh
#
# Installed: the programs, the man pages (phone-sim.1, pizza-services.8 and
# a .so page per service), the systemd units with @PREFIX@ filled in,
# commented example configuration, and the production broker configuration.
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

PIZZA_PROGS    := order-service order-executor order-history notifier phone-sim
PIZZA_SVC_MANS := order-service order-executor order-history notifier
PIZZA_UNITS    := pizza-order-service.service pizza-order-executor@.service \
                  pizza-order-history.service pizza-notifier.service
PIZZA_EXAMPLES := order-service.conf order-executor.conf order-history.conf notifier.conf \
                  phone-sim.conf service.env

# Every file install writes (without DESTDIR); uninstall removes these.
PIZZA_INSTALLED := $(PIZZA_PROGS:%=$(bindir)/%) \
                   $(man1dir)/phone-sim.1 $(man8dir)/pizza-services.8 $(PIZZA_SVC_MANS:%=$(man8dir)/%.8) \
                   $(PIZZA_UNITS:%=$(unitdir)/%) \
                   $(PIZZA_EXAMPLES:%=$(pizzadocdir)/examples/%) \
                   $(pizzadocdir)/mosquitto/mosquitto.conf $(pizzadocdir)/mosquitto/acl \
                   $(pizzadocdir)/mosquitto/README.md
# Directories that are ours alone: uninstall removes them when empty.
PIZZA_OWN_DIRS  := $(pizzadocdir)/examples $(pizzadocdir)/mosquitto $(pizzadocdir)

PIZZA_SUBST = sed -e 's|@PREFIX@/bin|$(bindir)|g' -e 's|@PREFIX@|$(PREFIX)|g'

.PHONY: install uninstall test-install

install: all
	@case "$(PREFIX)" in /*) ;; *) echo "install: PREFIX must be an absolute path, not '$(PREFIX)'" >&2; exit 2;; esac
	@for p in $(PIZZA_PROGS); do \
	  echo "install -D -m 755 $(BUILD)/bin/$$p $(DESTDIR)$(bindir)/$$p"; \
	  install -D -m 755 $(BUILD)/bin/$$p $(DESTDIR)$(bindir)/$$p || exit 1; \
	done
	install -D -m 644 install/man/phone-sim.1 $(DESTDIR)$(man1dir)/phone-sim.1
	$(PIZZA_SUBST) -i $(DESTDIR)$(man1dir)/phone-sim.1
	install -D -m 644 install/man/pizza-services.8 $(DESTDIR)$(man8dir)/pizza-services.8
	$(PIZZA_SUBST) -i $(DESTDIR)$(man8dir)/pizza-services.8
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
