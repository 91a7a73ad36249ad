/*
 * The storefront: sign in (POST /v1/login), the menu (GET /v1/menu), place an
 * order (POST /v1/orders) and watch it live as an MQTT client over WebSockets
 * (MQTT.js, the broker's URL from GET /v1/config), subscribed to
 * pizza/users/<user>/# with the same user id and password as the login.
 *
 * sessionStorage (this tab only, gone when it closes) keeps the token, the
 * current order id and, because the broker takes only passwords, the
 * password for the MQTT connection: a reload restores the page without
 * signing in again, and the retained status messages plus the order's
 * timeline restore the current order's progress.
 */
'use strict';

(function () {
	const STAGES = ['accepted', 'prep', 'bake', 'oven', 'ready'];
	const STAGE_NAMES = { accepted: 'Accepted', prep: 'Preparing', bake: 'Baking', oven: 'In the oven', ready: 'Ready' };
	const KEY = { user: 'pizza.user', token: 'pizza.token', password: 'pizza.password', order: 'pizza.order', notified: 'pizza.notified' };
	const $ = (id) => document.getElementById(id);

	let session = null;        /* {user, token, password} */
	let client = null;         /* the MQTT.js client */
	let menu = [];
	let history = [];          /* the last GET /v1/users/<user>/orders */
	const seen = new Set();    /* order_id + ':' + seq of every status applied */
	const progress = new Map(); /* order_id -> Map(stage -> at) */
	const alerts = new Map();  /* order_id -> pickup message */
	let announced = '';

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
			signOut();
			$('signin-error').textContent = 'Your session has expired. Please sign in again.';
			return true;
		}
		return false;
	}

	/* ---- sign in / out --------------------------------------------------- */

	function loadSession() {
		const user = sessionStorage.getItem(KEY.user);
		const token = sessionStorage.getItem(KEY.token);
		const password = sessionStorage.getItem(KEY.password);
		return user && token && password ? { user, token, password } : null;
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
			const r = await api('POST', '/v1/login', { user_id: user, password });
			session = { user: r.user_id, token: r.token, password };
			sessionStorage.setItem(KEY.user, session.user);
			sessionStorage.setItem(KEY.token, session.token);
			sessionStorage.setItem(KEY.password, password);
			$('password').value = '';
			await startShop();
		} catch (e) {
			err.textContent = e instanceof ApiError && e.status === 401 ? 'Wrong user id or password.'
				: e instanceof ApiError && e.status === 0 ? e.message : 'Sign-in failed: ' + e.message;
		} finally {
			$('signin-button').disabled = false;
		}
	}

	function signOut() {
		if (client) {
			client.end(true);
			client = null;
		}
		for (const k of Object.values(KEY))
			sessionStorage.removeItem(k);
		session = null;
		seen.clear();
		progress.clear();
		alerts.clear();
		history = [];
		announced = '';
		$('shop').hidden = true;
		$('whoami').hidden = true;
		$('signin').hidden = false;
		$('history').replaceChildren();
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
		connectMqtt();
	}

	async function loadMenu() {
		const box = $('menu');
		try {
			const r = await api('GET', '/v1/menu');
			menu = r.items || [];
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
	}

	async function onOrder(ev) {
		ev.preventDefault();
		const err = $('order-error');
		const checked = document.querySelector('input[name=sku]:checked');
		const qty = Number($('qty').value);
		err.textContent = '';
		/* asked on the click (a user gesture); a refusal only means no system notification */
		if ('Notification' in window && Notification.permission === 'default') {
			try {
				Notification.requestPermission().catch(() => {});
			} catch (e) { /* old browsers: callback form, or none */ }
		}
		if (!checked) {
			err.textContent = 'Choose a pizza.';
			return;
		}
		if (!Number.isInteger(qty) || qty < 1 || qty > Number($('qty').max)) {
			err.textContent = 'The quantity must be between 1 and ' + $('qty').max + '.';
			return;
		}
		$('order-button').disabled = true;
		try {
			const r = await api('POST', '/v1/orders', { items: [{ sku: checked.value, qty }] },
				{ 'Idempotency-Key': randomId() });
			sessionStorage.setItem(KEY.order, r.order_id);
			announced = '';
			renderCurrent();
			announce('Order placed: ' + r.order_id);
			loadHistory();
		} catch (e) {
			if (!expired(e))
				err.textContent = e.status === 0 ? e.message : 'The order was not placed: ' + e.message;
		} finally {
			$('order-button').disabled = false;
		}
	}

	/* After a reload: the current order's timeline so far (the retained status follows over MQTT). */
	async function restoreCurrent() {
		const id = sessionStorage.getItem(KEY.order);
		if (!id)
			return;
		try {
			const o = await api('GET', '/v1/orders/' + encodeURIComponent(id));
			for (const t of o.timeline || [])
				if (STAGES.includes(t.status))
					record(id, t.status, t.seq, t.at);
		} catch (e) {
			/* 404: the history has not seen it yet; the broker's retained status still will */
			expired(e);
		}
		renderCurrent();
	}

	async function loadHistory() {
		const err = $('history-error');
		try {
			const r = await api('GET', '/v1/users/' + encodeURIComponent(session.user) + '/orders?limit=10');
			history = r.orders || [];
			err.textContent = '';
		} catch (e) {
			if (!expired(e))
				err.textContent = 'Cannot load your past orders: ' + e.message;
			return;
		}
		renderHistory();
	}

	/* ---- MQTT over WebSockets ------------------------------------------- */

	async function connectMqtt() {
		let cfg;
		try {
			cfg = await api('GET', '/v1/config');
		} catch (e) {
			setConn('offline', 'Live updates unavailable: ' + e.message);
			return;
		}
		if (!session || typeof mqtt === 'undefined') {
			setConn('offline', 'Live updates unavailable: the MQTT library did not load.');
			return;
		}
		const me = session;
		client = mqtt.connect(cfg.mqtt_ws_url, {
			protocolVersion: 5,
			clientId: 'web-' + me.user + '-' + randomId().slice(0, 12),
			username: me.user,
			password: me.password,
			clean: true,
			reconnectPeriod: 3000,
			connectTimeout: 10000,
		});
		client.on('connect', () => {
			setConn('online', 'Live updates: connected');
			client.subscribe('pizza/users/' + me.user + '/#', { qos: 1 }, (e) => {
				if (e)
					setConn('offline', 'Live updates: cannot subscribe (' + e.message + ')');
			});
		});
		client.on('reconnect', () => setConn('offline', 'Live updates: reconnecting…'));
		client.on('offline', () => setConn('offline', 'Live updates: offline, retrying…'));
		client.on('error', (e) => setConn('offline', 'Live updates: ' + e.message));
		client.on('message', (topic, payload) => onMessage(topic, payload));
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
			alerts.set(m.order_id, m.message);
			renderCurrent();
		}
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
		if (!p.has(status) || !p.get(status))
			p.set(status, at || null);
		return true;
	}

	/* ---- rendering ------------------------------------------------------- */

	function currentStage(orderId) {
		const p = progress.get(orderId);
		let idx = -1;
		if (p)
			for (const s of p.keys())
				idx = Math.max(idx, STAGES.indexOf(s));
		return idx;
	}

	function renderCurrent() {
		const id = session ? sessionStorage.getItem(KEY.order) : null;
		$('no-order').hidden = !!id;
		$('current').hidden = !id;
		$('pickup').hidden = true;
		if (!id)
			return;
		$('current-id').textContent = id;
		const p = progress.get(id) || new Map();
		const idx = currentStage(id);
		const first = p.get('accepted') ? Date.parse(p.get('accepted')) : NaN;
		for (const li of $('progress').children) {
			const i = STAGES.indexOf(li.dataset.stage);
			const at = p.get(li.dataset.stage);
			/* a later stage means the earlier ones happened, even if their messages were missed */
			li.classList.toggle('done', i <= idx);
			li.classList.toggle('current', i === idx);
			const t = li.querySelector('time');
			if (at) {
				t.dateTime = at;
				const ms = Date.parse(at);
				t.textContent = formatTime(ms) + (i > 0 && !isNaN(first) ? ' (+' + ((ms - first) / 1000).toFixed(1) + ' s)' : '');
			} else {
				t.removeAttribute('datetime');
				t.textContent = '';
			}
		}
		if (idx >= 0 && STAGES[idx] !== announced) {
			announced = STAGES[idx];
			announce('Order status: ' + STAGE_NAMES[announced]);
		}
		if (idx === STAGES.length - 1) {
			const msg = alerts.get(id) || 'Your order is ready for pickup.';
			const box = $('pickup');
			box.hidden = false;
			box.textContent = msg;
			notifyOnce(id, msg);
		}
	}

	function renderHistory() {
		const ul = $('history');
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
			const id = document.createElement('code');
			id.textContent = o.order_id;
			const items = document.createElement('span');
			items.textContent = (o.items || []).map((it) => it.qty + ' × ' + skuName(it.sku)).join(', ');
			const status = document.createElement('span');
			status.className = 'status';
			const live = currentStage(o.order_id);
			const st = live > STAGES.indexOf(o.status) ? STAGES[live] : o.status;
			status.textContent = STAGE_NAMES[st] || st || '';
			const when = document.createElement('time');
			when.className = 'when';
			if (o.placed_at) {
				when.dateTime = o.placed_at;
				when.textContent = new Date(o.placed_at).toLocaleString();
			}
			li.append(id, items, status, when);
			return li;
		}));
	}

	function notifyOnce(orderId, msg) {
		if (sessionStorage.getItem(KEY.notified) === orderId)
			return;
		sessionStorage.setItem(KEY.notified, orderId);
		announce(msg);
		try {
			if ('Notification' in window && Notification.permission === 'granted')
				new Notification('Pizza ready', { body: msg, tag: orderId });
		} catch (e) { /* some browsers allow notifications only from a service worker */ }
	}

	function announce(text) {
		$('live').textContent = text;
	}

	function setConn(state, text) {
		const c = $('conn');
		c.dataset.state = state;
		c.textContent = text;
	}

	function skuName(sku) {
		const m = menu.find((x) => x.sku === sku);
		return m ? m.name : sku;
	}

	function formatPrice(cents, currency) {
		try {
			return new Intl.NumberFormat(undefined, { style: 'currency', currency: currency || 'EUR' }).format(cents / 100);
		} catch (e) {
			return (cents / 100).toFixed(2) + ' ' + (currency || '');
		}
	}

	function formatTime(ms) {
		return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
	}

	function randomId() {
		if (window.crypto && crypto.randomUUID)
			return crypto.randomUUID();
		return Date.now().toString(36) + Math.random().toString(36).slice(2);
	}

	/* ---- start ----------------------------------------------------------- */

	$('signin-form').addEventListener('submit', onSignIn);
	$('order-form').addEventListener('submit', onOrder);
	$('signout').addEventListener('click', signOut);
	session = loadSession();
	if (session)
		startShop();
	else
		$('user').focus();
})();
