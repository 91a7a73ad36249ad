/*
 * The storefront: sign in (POST /v1/login), the menu (GET /v1/menu), place an
 * order (POST /v1/orders) and watch it live as an MQTT client over WebSockets
 * (MQTT.js, the broker's URL from GET /v1/config), subscribed to
 * pizza/users/<user>/#.
 *
 * The user's password is never stored.  Each browser has a device id
 * (localStorage, "web-" and 8 hex digits) sent with the login; a server that
 * issues a per-device broker credential answers it as "mqtt"
 * ({username, password, client_id}), and the page connects with that.  A
 * server that does not gets the typed password for the broker, kept in this
 * page's memory only: after a reload the customer signs in again.
 *
 * sessionStorage (this tab only, gone when it closes) keeps the user id, the
 * token, the device's broker credential when there is one, and the current
 * order (id, items, when it was accepted): a reload restores the page, and the
 * retained status messages plus the order's timeline restore the order's
 * progress.
 *
 * The order's first stage, accepted, is the 202 of POST /v1/orders: the
 * order's status topic carries prep, bake, oven and ready only
 * (docs/events.md), and its timeline in the history starts with accepted at
 * the order's placement.
 */
'use strict';

(function () {
	const STAGES = ['accepted', 'prep', 'bake', 'oven', 'ready'];
	const STAGE_NAMES = { accepted: 'Accepted', prep: 'Preparing', bake: 'Baking', oven: 'In the oven', ready: 'Ready' };
	const KEY = { user: 'pizza.user', token: 'pizza.token', mqtt: 'pizza.mqtt', order: 'pizza.order', notified: 'pizza.notified' };
	const DEVICE_KEY = 'pizza.device'; /* localStorage: one id per browser */
	const SHOP = 'Pizza';
	const $ = (id) => document.getElementById(id);

	let session = null;        /* {user, token, mqtt: {username, password, client_id} | null, password: only in memory} */
	let client = null;         /* the MQTT.js client */
	let menu = [];
	let history = [];          /* the last GET /v1/users/<user>/orders */
	let lastStageMs = null;    /* one kitchen stage, as last measured on a finished order */
	const seen = new Set();    /* order_id + ':' + seq of every status applied */
	const progress = new Map(); /* order_id -> Map(stage -> at) */
	const localAccepted = new Set(); /* order ids whose accepted time is this browser's clock, until the server's comes */
	const alerts = new Map();  /* order_id -> pickup message */
	const receipted = new Set(); /* event ids of the alerts this device has confirmed */
	let announced = '';
	const tabs = 'BroadcastChannel' in window ? new BroadcastChannel('pizza.device') : null; /* this browser's other tabs */

	/* ---- HTTP ------------------------------------------------------------ */

	class ApiError extends Error {
		constructor(status, message) {
			super(message);
			this.status = status;
		}
	}

	async function api(method, path, body, extraHeaders) {
		const headers = Object.assign({ Accept: 'application/json' }, extraHeaders || {});
		if (session && session.token)
			headers.Authorization = 'Bearer ' + session.token;
		if (body !== undefined)
			headers['Content-Type'] = 'application/json';
		let res;
		try {
			res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
		} catch (e) {
			throw new ApiError(0, 'Cannot reach the pizza server. Check your connection and try again.');
		}
		let data = null;
		try {
			data = await res.json();
		} catch (e) {
			data = null;
		}
		if (!res.ok) {
			const detail = data && data.detail ? data.detail : 'HTTP ' + res.status;
			throw new ApiError(res.status, detail);
		}
		return data;
	}

	/* An authenticated call failing with 401: the token expired; back to the sign-in form. */
	function expired(e) {
		if (e instanceof ApiError && e.status === 401 && session) {
			signOut('Your session has expired. Please sign in again.');
			return true;
		}
		return false;
	}

	/* ---- storage ---------------------------------------------------------- */

	function store(k, v) {
		try {
			if (v === null)
				sessionStorage.removeItem(k);
			else
				sessionStorage.setItem(k, typeof v === 'string' ? v : JSON.stringify(v));
		} catch (e) { /* storage full or off: the page still works until a reload */ }
	}

	function stored(k) {
		try {
			return sessionStorage.getItem(k);
		} catch (e) {
			return null;
		}
	}

	function storedJson(k) {
		try {
			return JSON.parse(stored(k));
		} catch (e) {
			return null;
		}
	}

	/* This browser's device id, made once: "web-" and 8 random hex digits. */
	function deviceId() {
		let d = null;
		try {
			d = localStorage.getItem(DEVICE_KEY);
		} catch (e) { /* no localStorage: a new id per page */ }
		if (typeof d === 'string' && /^web-[0-9a-f]{8}$/.test(d))
			return d;
		const b = new Uint8Array(4);
		crypto.getRandomValues(b);
		d = 'web-' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
		try {
			localStorage.setItem(DEVICE_KEY, d);
		} catch (e) { /* as above */ }
		return d;
	}

	/* The per-device broker credential of a login answer, or null when it has none (or a malformed one). */
	function brokerCredential(m) {
		const ok = (s) => typeof s === 'string' && s.length > 0 && s.length <= 256;
		if (!m || typeof m !== 'object' || !ok(m.username) || !ok(m.password))
			return null;
		return { username: m.username, password: m.password, client_id: ok(m.client_id) ? m.client_id : null };
	}

	/* The current order: {id, items, at (ms: when its 202 came, or null)} or null. */
	function currentOrder() {
		if (!session)
			return null;
		const o = storedJson(KEY.order);
		if (o && typeof o.id === 'string')
			return { id: o.id, items: Array.isArray(o.items) ? o.items : null, at: Number.isFinite(o.at) ? o.at : null };
		return null;
	}

	/* ---- sign in / out --------------------------------------------------- */

	/* A stored session needs a broker credential: without one (the password is never stored), sign in again. */
	function loadSession() {
		try {
			sessionStorage.removeItem('pizza.password'); /* left by an older version of this page */
		} catch (e) { /* nothing to clean */ }
		const user = stored(KEY.user);
		const token = stored(KEY.token);
		const mq = brokerCredential(storedJson(KEY.mqtt));
		if (user && token && mq)
			return { user, token, mqtt: mq, password: null };
		if (user && token) {
			store(KEY.token, null);
			$('user').value = user;
			const note = $('signin-note');
			note.textContent = 'Welcome back. This browser does not keep your password: please enter it again to continue.';
			note.hidden = false;
		}
		return null;
	}

	async function onSignIn(ev) {
		ev.preventDefault();
		const user = $('user').value.trim();
		const password = $('password').value;
		const err = $('signin-error');
		err.textContent = '';
		if (!/^[A-Za-z0-9_-]{1,64}$/.test(user)) {
			err.textContent = 'Enter your user id (letters, digits, _ and -).';
			$('user').focus();
			return;
		}
		if (password === '') {
			err.textContent = 'Enter your password.';
			$('password').focus();
			return;
		}
		$('signin-button').disabled = true;
		try {
			const r = await api('POST', '/v1/login', { user_id: user, password, device: deviceId() });
			const mq = brokerCredential(r.mqtt);
			if (stored(KEY.user) !== r.user_id) {
				store(KEY.order, null);
				store(KEY.notified, null);
			}
			session = { user: r.user_id, token: r.token, mqtt: mq, password: mq ? null : password };
			store(KEY.user, session.user);
			store(KEY.token, session.token);
			store(KEY.mqtt, mq);
			$('password').value = '';
			$('signin-note').hidden = true;
			await startShop();
		} catch (e) {
			err.textContent = e instanceof ApiError && e.status === 401 ? 'Wrong user id or password.'
				: e instanceof ApiError && e.status === 0 ? e.message : 'Sign-in failed: ' + e.message;
		} finally {
			$('signin-button').disabled = false;
		}
	}

	function signOut(why) {
		if (client) {
			client.end(true);
			client = null;
		}
		for (const k of Object.values(KEY))
			store(k, null);
		session = null;
		seen.clear();
		progress.clear();
		localAccepted.clear();
		alerts.clear();
		receipted.clear();
		history = [];
		announced = '';
		setConn('offline', 'Live updates: offline');
		$('shop').hidden = true;
		$('whoami').hidden = true;
		$('whoami-user').textContent = '';
		$('signin').hidden = false;
		$('history').replaceChildren();
		$('signin-note').hidden = true;
		$('signin-error').textContent = typeof why === 'string' ? why : '';
		renderCurrent();
		$('user').focus();
	}

	/* ---- the shop -------------------------------------------------------- */

	async function startShop() {
		$('signin').hidden = true;
		$('shop').hidden = false;
		$('whoami').hidden = false;
		$('whoami-user').textContent = session.user;
		renderCurrent();
		await Promise.all([loadMenu(), loadHistory(), restoreCurrent()]);
		renderCurrent();
		renderHistory();
		connectMqtt();
	}

	async function loadMenu() {
		const box = $('menu');
		try {
			const r = await api('GET', '/v1/menu');
			menu = Array.isArray(r.items) ? r.items : [];
			$('qty').max = String(r.max_qty || 99);
		} catch (e) {
			$('order-error').textContent = 'Cannot load the menu: ' + e.message;
			return;
		}
		box.replaceChildren(...menu.map((item, i) => {
			const label = document.createElement('label');
			const input = document.createElement('input');
			input.type = 'radio';
			input.name = 'sku';
			input.value = item.sku;
			input.id = 'sku-' + item.sku;
			input.checked = i === 0;
			const name = document.createElement('span');
			name.textContent = item.name;
			const price = document.createElement('span');
			price.className = 'price';
			price.textContent = formatPrice(item.price_cents, item.currency);
			label.append(input, name, price);
			return label;
		}));
		renderTotal();
	}

	/* The form's choice as order items, or null. */
	function chosenItems() {
		const checked = document.querySelector('input[name=sku]:checked');
		const qty = Number($('qty').value);
		if (!checked || !Number.isInteger(qty) || qty < 1 || qty > Number($('qty').max))
			return null;
		return [{ sku: checked.value, qty }];
	}

	function renderTotal() {
		const items = chosenItems();
		const total = items ? orderTotal(items) : null;
		$('total').textContent = total ? 'Total ' + total : '';
	}

	async function onOrder(ev) {
		ev.preventDefault();
		const err = $('order-error');
		err.textContent = '';
		/* asked on the click (a user gesture); a refusal only means no system notification */
		if ('Notification' in window && Notification.permission === 'default') {
			try {
				Notification.requestPermission().catch(() => {});
			} catch (e) { /* old browsers: callback form, or none */ }
		}
		if (!document.querySelector('input[name=sku]:checked')) {
			err.textContent = 'Choose a pizza.';
			return;
		}
		const items = chosenItems();
		if (!items) {
			err.textContent = 'The quantity must be between 1 and ' + $('qty').max + '.';
			return;
		}
		$('order-button').disabled = true;
		try {
			const r = await api('POST', '/v1/orders', { items }, { 'Idempotency-Key': randomId() });
			const at = Date.now();
			store(KEY.order, { id: r.order_id, items, at });
			/* the 202 is the order's accepted stage; the announcement below says so */
			recordAccepted(r.order_id, at, false);
			announced = 'accepted';
			renderCurrent();
			announce('Order ' + shortId(r.order_id) + ' placed: ' + itemsText(items) + '.');
			loadHistory();
		} catch (e) {
			if (!expired(e))
				err.textContent = e.status === 0 ? e.message : 'The order was not placed: ' + e.message;
		} finally {
			$('order-button').disabled = false;
		}
	}

	/* After a reload: the current order's items and timeline so far (the retained status follows over MQTT). */
	async function restoreCurrent() {
		const cur = currentOrder();
		if (!cur)
			return;
		try {
			const o = await api('GET', '/v1/orders/' + encodeURIComponent(cur.id));
			for (const t of o.timeline || [])
				if (t.status === 'accepted')
					recordAccepted(cur.id, Date.parse(t.at), true);
				else if (STAGES.includes(t.status))
					record(cur.id, t.status, t.seq, t.at);
			if (!cur.items && Array.isArray(o.items))
				store(KEY.order, { id: cur.id, items: o.items, at: cur.at });
		} catch (e) {
			/* 404: the history has not seen it yet; the broker's retained status still will */
			expired(e);
		}
		/* no timeline yet (or no accepted in it): when its 202 came */
		if (cur.at !== null)
			recordAccepted(cur.id, cur.at, false);
	}

	async function loadHistory() {
		const err = $('history-error');
		const me = session;
		try {
			const r = await api('GET', '/v1/users/' + encodeURIComponent(me.user) + '/orders?limit=10');
			if (session !== me)
				return;
			history = Array.isArray(r.orders) ? r.orders : [];
			err.textContent = '';
			/* an order accepted at this browser's time: order-service's own, from its timeline */
			for (const o of history)
				if (localAccepted.has(o.order_id))
					for (const t of o.timeline || [])
						if (t.status === 'accepted')
							recordAccepted(o.order_id, Date.parse(t.at), true);
		} catch (e) {
			if (session === me && !expired(e))
				err.textContent = 'Cannot load your past orders: ' + e.message;
			return;
		}
		renderHistory();
		renderCurrent(); /* a first estimate of the ready time can come from a past order */
	}

	/* ---- MQTT over WebSockets ------------------------------------------- */

	async function connectMqtt() {
		const me = session;
		let cfg;
		try {
			cfg = await api('GET', '/v1/config');
		} catch (e) {
			setConn('offline', 'Live updates unavailable: ' + e.message);
			return;
		}
		if (session !== me || !me)
			return;
		if (typeof mqtt === 'undefined') {
			setConn('offline', 'Live updates unavailable: the MQTT library did not load.');
			return;
		}
		/* the device's own credential and client id (its session survives a reload), else the password in memory */
		const opts = me.mqtt ? {
			clientId: me.mqtt.client_id || 'web-' + me.user + '-' + randomId().slice(0, 12),
			username: me.mqtt.username,
			password: me.mqtt.password,
			clean: !me.mqtt.client_id,
			properties: me.mqtt.client_id ? { sessionExpiryInterval: 3600 } : undefined,
		} : {
			clientId: 'web-' + me.user + '-' + randomId().slice(0, 12),
			username: me.user,
			password: me.password,
			clean: true,
		};
		const c = mqtt.connect(cfg.mqtt_ws_url, Object.assign(opts, {
			protocolVersion: 5,
			reconnectPeriod: 3000,
			connectTimeout: 10000,
		}));
		client = c;
		/* events of a client this page has since dropped (sign-out) change nothing */
		const mine = (fn) => (...args) => {
			if (client === c)
				fn(...args);
		};
		c.on('connect', mine(() => {
			const dev = accountDevice(me);
			setConn('online', 'Live updates: connected');
			c.subscribe('pizza/users/' + me.user + '/#', { qos: 1 }, mine((e) => {
				if (e)
					setConn('offline', 'Live updates: cannot subscribe (' + e.message + ')');
			}));
			/* a device says hello on every connect: the notifier sends again what it has not confirmed */
			if (dev)
				c.publish(deviceTopic(me, dev, 'hello'), JSON.stringify({ device: dev }), { qos: 1 });
		}));
		c.on('reconnect', mine(() => setConn('offline', 'Live updates: reconnecting…')));
		c.on('offline', mine(() => setConn('offline', 'Live updates: offline, retrying…')));
		c.on('error', mine((e) => {
			/* 134 bad user name or password, 135 not authorized: a revoked device or a changed password */
			if (e && (e.code === 134 || e.code === 135))
				signOut('Live updates were refused for this device. Please sign in again.');
			else
				setConn('offline', 'Live updates: ' + (e && e.message ? e.message : 'error'));
		}));
		/*
		 * The device's client id is one per browser: a second tab connecting with it takes the broker
		 * session over.  The tab that connects last keeps it; the others step back instead of knocking
		 * it off again (told over a BroadcastChannel, or by a DISCONNECT "session taken over", 142).
		 */
		const stepBack = () => {
			client = null;
			c.end(true);
			setConn('offline', 'Live updates moved to another tab of this browser; reload this one to take them back.');
		};
		c.on('disconnect', mine((packet) => {
			if (packet && packet.reasonCode === 142)
				stepBack();
		}));
		if (me.mqtt && me.mqtt.client_id && tabs) {
			c.on('connect', mine(() => tabs.postMessage({ connected: me.mqtt.client_id })));
			tabs.onmessage = mine((ev) => {
				if (ev.data && ev.data.connected === me.mqtt.client_id)
					stepBack();
			});
		}
		c.on('message', mine((topic, payload) => onMessage(topic, payload)));
	}

	function onMessage(topic, payload) {
		let m;
		try {
			m = JSON.parse(new TextDecoder().decode(payload));
		} catch (e) {
			return; /* not ours to show */
		}
		if (!m || typeof m.order_id !== 'string')
			return;
		if (m.type === 'OrderStatus' && topic.endsWith('/status')) {
			if (record(m.order_id, m.status, m.seq, m.at)) {
				renderCurrent();
				renderHistory();
				if (m.status === 'ready' && history.some((o) => o.order_id === m.order_id && o.status !== 'ready'))
					loadHistory();
			}
		} else if (m.type === 'PickupAlert' && typeof m.message === 'string') {
			alerts.set(m.order_id, m.message.slice(0, 256));
			renderCurrent();
			receipt(m);
		}
	}

	/* The device name of the page's own broker account ("<user>.<device>"), or null without one. */
	function accountDevice(me) {
		const u = me && me.mqtt ? me.mqtt.username : null;
		const dot = typeof u === 'string' ? u.indexOf('.') : -1;
		return dot > 0 ? u.slice(dot + 1) : null;
	}

	function deviceTopic(me, dev, what) {
		return 'pizza/users/' + me.user + '/devices/' + dev + '/' + what;
	}

	/* Tells the notifier this device has shown alert m (once per event id, however many copies came). */
	function receipt(m) {
		const me = session, dev = accountDevice(me);
		if (!dev || !client || typeof m.event_id !== 'string' || receipted.has(m.event_id))
			return;
		receipted.add(m.event_id);
		client.publish(deviceTopic(me, dev, 'receipts'), JSON.stringify({ event_id: m.event_id, order_id: m.order_id }),
			{ qos: 1 });
	}

	/* Records a stage; false for a duplicate (same order_id and seq) or an unknown stage. */
	function record(orderId, status, seq, at) {
		if (!STAGES.includes(status))
			return false;
		const key = orderId + ':' + (seq !== undefined ? seq : status);
		if (seen.has(key))
			return false;
		seen.add(key);
		if (!progress.has(orderId))
			progress.set(orderId, new Map());
		const p = progress.get(orderId);
		const ms = typeof at === 'string' ? Date.parse(at) : NaN;
		if (!p.get(status))
			p.set(status, isNaN(ms) ? null : ms);
		return true;
	}

	/*
	 * The order's accepted stage at ms: from its 202 (fromServer false, this browser's clock), or from its
	 * timeline (order-service's clock, a server's like the kitchen's stage times, from which the estimates
	 * subtract it), which replaces a time of the browser's.  False when it changed nothing.
	 */
	function recordAccepted(orderId, ms, fromServer) {
		if (isNaN(ms))
			return false;
		const p = progress.get(orderId);
		if (fromServer && p && localAccepted.has(orderId)) {
			localAccepted.delete(orderId);
			p.set('accepted', ms);
			return true;
		}
		if (!record(orderId, 'accepted', 1, new Date(ms).toISOString()))
			return false;
		if (!fromServer)
			localAccepted.add(orderId);
		return true;
	}

	/* ---- estimates ------------------------------------------------------- */

	function currentStage(orderId) {
		const p = progress.get(orderId);
		let idx = -1;
		if (p)
			for (const s of p.keys())
				idx = Math.max(idx, STAGES.indexOf(s));
		return idx;
	}

	/* How long one kitchen stage takes: from this order's stages so far, else a finished past order; null if unknown. */
	function stageMs(orderId) {
		const p = progress.get(orderId);
		if (p && p.get('accepted')) {
			let best = null;
			STAGES.forEach((s, i) => {
				if (i > 0 && p.get(s))
					best = (p.get(s) - p.get('accepted')) / i;
			});
			if (best !== null && best >= 0)
				return best;
		}
		if (lastStageMs !== null)
			return lastStageMs;
		for (const o of history) {
			const t = new Map((o.timeline || []).map((e) => [e.status, Date.parse(e.at)]));
			const d = (t.get('ready') - t.get('accepted')) / (STAGES.length - 1);
			if (d >= 0)
				return d;
		}
		return null;
	}

	/* ---- rendering ------------------------------------------------------- */

	function renderCurrent() {
		const cur = currentOrder();
		const id = cur ? cur.id : null;
		$('shop').classList.toggle('has-order', !!id);
		$('no-order').hidden = !!id;
		$('current').hidden = !id;
		$('pickup').hidden = true;
		if (!id) {
			document.title = SHOP;
			return;
		}
		const label = shortId(id);
		$('current-id').textContent = id;
		$('current-label').textContent = 'Order ' + label;
		$('current-label').title = 'Order id ' + id;
		$('current-items').textContent = cur.items ? itemsText(cur.items) : '';
		const total = cur.items ? orderTotal(cur.items) : null;
		$('current-total').textContent = total ? 'Total ' + total : '';
		const p = progress.get(id) || new Map();
		const idx = currentStage(id);
		const per = stageMs(id);
		const seconds = per === null || per < 60000;
		for (const li of $('progress').children) {
			const i = STAGES.indexOf(li.dataset.stage);
			const at = p.get(li.dataset.stage);
			/* a later stage means the earlier ones happened, even if their messages were missed */
			li.classList.toggle('done', i <= idx);
			li.classList.toggle('current', i === idx);
			const t = li.querySelector('time');
			if (at) {
				t.dateTime = new Date(at).toISOString();
				t.title = new Date(at).toLocaleString();
				t.textContent = formatClock(at, seconds);
			} else {
				t.removeAttribute('datetime');
				t.removeAttribute('title');
				t.textContent = '';
			}
		}
		renderEta();
		if (idx >= 0 && STAGES[idx] !== announced) {
			announced = STAGES[idx];
			if (announced !== 'ready')
				announce('Order ' + label + ': ' + STAGE_NAMES[announced] + '.');
		}
		if (idx === STAGES.length - 1) {
			const msg = readyText(id, cur.items);
			const box = $('pickup');
			box.hidden = false;
			if (cur.items) {
				/* "2 × Funghi" never breaks across lines */
				const what = document.createElement('span');
				what.className = 'nowrap';
				what.textContent = itemsText(cur.items);
				box.replaceChildren('Order ' + label + ' is ready for pickup: ', what, '.');
			} else {
				box.textContent = msg;
			}
			document.title = 'Ready for pickup! · ' + SHOP;
			notifyOnce(id, cur.items, msg);
		} else {
			document.title = (idx >= 0 ? STAGE_NAMES[STAGES[idx]] : 'Order placed') + ' · ' + SHOP;
		}
	}

	/* The ready time: measured once ready, otherwise an estimate from the stage timings seen. */
	function renderEta() {
		const cur = currentOrder();
		const eta = $('eta');
		eta.classList.remove('done');
		if (!cur) {
			eta.textContent = '';
			return;
		}
		const p = progress.get(cur.id) || new Map();
		const idx = currentStage(cur.id);
		const per = stageMs(cur.id);
		const seconds = per === null || per < 60000;
		if (idx === STAGES.length - 1) {
			const a = p.get('accepted'), r = p.get('ready');
			if (a && r && r >= a)
				lastStageMs = (r - a) / (STAGES.length - 1);
			eta.classList.add('done');
			eta.textContent = a && r ? 'Ready at ' + formatClock(r, seconds) + ', ' + duration(r - a) + ' after you ordered.'
				: 'Ready for pickup.';
			return;
		}
		if (per === null) {
			eta.textContent = 'Ready time: estimated once the kitchen starts.';
			return;
		}
		/* from the latest stage seen, the stages still to come */
		let base = Date.now(), left = STAGES.length - 1;
		for (let i = idx; i >= 0; i--)
			if (p.get(STAGES[i])) {
				base = p.get(STAGES[i]);
				left = STAGES.length - 1 - i;
				break;
			}
		const at = base + left * per;
		const wait = at - Date.now();
		eta.textContent = wait > 500 ? 'Ready at about ' + formatClock(at, seconds) + ' (in about ' + duration(wait) + ').'
			: 'Ready any moment now.';
	}

	function readyText(id, items) {
		if (items)
			return 'Order ' + shortId(id) + ' is ready for pickup: ' + itemsText(items) + '.';
		return alerts.get(id) || 'Order ' + shortId(id) + ' is ready for pickup.';
	}

	function renderHistory() {
		const ul = $('history');
		if (!session)
			return;
		if (history.length === 0) {
			const li = document.createElement('li');
			li.className = 'hint';
			li.textContent = 'No orders yet.';
			ul.replaceChildren(li);
			return;
		}
		ul.replaceChildren(...history.map((o) => {
			const li = document.createElement('li');
			li.dataset.orderId = o.order_id;
			const label = document.createElement('span');
			label.className = 'label';
			label.textContent = shortId(o.order_id);
			label.title = 'Order id ' + o.order_id;
			const items = document.createElement('span');
			items.className = 'items';
			items.textContent = Array.isArray(o.items) ? itemsText(o.items) : 'Order details coming…';
			const status = document.createElement('span');
			status.className = 'status';
			const live = currentStage(o.order_id);
			const st = live > STAGES.indexOf(o.status) ? STAGES[live] : o.status;
			status.dataset.status = st || '';
			status.textContent = STAGE_NAMES[st] || (st === 'placed' ? 'Placed' : st || '');
			const sub = document.createElement('span');
			sub.className = 'sub';
			const total = Array.isArray(o.items) ? orderTotal(o.items) : null;
			if (o.placed_at) {
				const when = document.createElement('time');
				when.dateTime = o.placed_at;
				when.textContent = formatWhen(Date.parse(o.placed_at));
				sub.append(when);
			}
			if (total)
				sub.append((o.placed_at ? ' · ' : '') + total);
			li.append(label, items, status, sub);
			return li;
		}));
	}

	/* The browser notification, once per order, naming the order and what is in it. */
	function notifyOnce(orderId, items, msg) {
		if (stored(KEY.notified) === orderId)
			return;
		store(KEY.notified, orderId);
		announce(msg);
		try {
			if ('Notification' in window && Notification.permission === 'granted')
				new Notification('Your pizza is ready', {
					body: items ? 'Order ' + shortId(orderId) + ': ' + itemsText(items) + '. Ready for pickup.' : msg,
					tag: orderId,
				});
		} catch (e) { /* some browsers allow notifications only from a service worker */ }
	}

	function announce(text) {
		$('live').textContent = text;
	}

	function setConn(state, text) {
		const c = $('conn');
		c.dataset.state = state;
		c.title = text;
		c.textContent = state === 'online' ? 'Live' : 'Offline';
		c.setAttribute('aria-label', text);
	}

	/* ---- words and numbers ----------------------------------------------- */

	/* A short label for an order: the last 6 characters of its id (the random part of a ULID). */
	function shortId(id) {
		return '#' + String(id).slice(-6);
	}

	function skuName(sku) {
		const m = menu.find((x) => x.sku === sku);
		return m ? m.name : sku;
	}

	function itemsText(items) {
		return items.map((it) => it.qty + ' × ' + skuName(it.sku)).join(', ');
	}

	/* The price of items from the menu, formatted; null when the menu does not price all of them. */
	function orderTotal(items) {
		let cents = 0, currency = null;
		for (const it of items) {
			const m = menu.find((x) => x.sku === it.sku);
			if (!m || !Number.isInteger(m.price_cents) || (currency && m.currency !== currency))
				return null;
			currency = m.currency;
			cents += m.price_cents * it.qty;
		}
		return items.length ? formatPrice(cents, currency) : null;
	}

	function formatPrice(cents, currency) {
		try {
			return new Intl.NumberFormat(undefined, { style: 'currency', currency: currency || 'EUR' }).format(cents / 100);
		} catch (e) {
			return (cents / 100).toFixed(2) + ' ' + (currency || '');
		}
	}

	function formatClock(ms, seconds) {
		const o = { hour: '2-digit', minute: '2-digit' };
		if (seconds)
			o.second = '2-digit';
		return new Date(ms).toLocaleTimeString([], o);
	}

	/* "today 14:05", "yesterday 09:12", else the date and time */
	function formatWhen(ms) {
		const d = new Date(ms), now = new Date();
		const day = (x) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
		const clock = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
		const days = Math.round((day(now) - day(d)) / 86400000);
		if (days === 0)
			return 'Today ' + clock;
		if (days === 1)
			return 'Yesterday ' + clock;
		return d.toLocaleDateString([], { day: 'numeric', month: 'short', year: d.getFullYear() === now.getFullYear() ? undefined : 'numeric' }) + ' ' + clock;
	}

	/* "under a second", "3 seconds", "4 minutes", "1 h 20 min" */
	function duration(ms) {
		const s = Math.round(ms / 1000);
		if (s < 1)
			return 'under a second';
		if (s < 60)
			return s + (s === 1 ? ' second' : ' seconds');
		const min = Math.round(s / 60);
		if (min < 60)
			return min + (min === 1 ? ' minute' : ' minutes');
		return Math.floor(min / 60) + ' h ' + (min % 60) + ' min';
	}

	function randomId() {
		if (window.crypto && crypto.randomUUID)
			return crypto.randomUUID();
		return Date.now().toString(36) + Math.random().toString(36).slice(2);
	}

	/* ---- start ----------------------------------------------------------- */

	$('signin-form').addEventListener('submit', onSignIn);
	$('order-form').addEventListener('submit', onOrder);
	$('order-form').addEventListener('input', renderTotal);
	$('signout').addEventListener('click', () => signOut());
	/* the estimate counts down while an order is in the kitchen */
	setInterval(() => {
		if (session && !$('current').hidden)
			renderEta();
	}, 1000);
	session = loadSession();
	if (session)
		startShop();
	else
		$(stored(KEY.user) ? 'password' : 'user').focus();
})();
