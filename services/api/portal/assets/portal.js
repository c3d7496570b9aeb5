// The household portal's only script: grant and revoke consents through the household API
// (with the session's CSRF token) without leaving the page, asking in a dialog before a
// revocation, and keep the earnings estimate of each offer in step with the meters chosen.
// Money is integer micro-euros in BigInt: no float. Without it every form still works: a
// grant is posted to /consents, and Revoke leads to a page that asks first.
;(function () {
  'use strict'

  var csrfMeta = document.querySelector('meta[name="csrf-token"]')
  var csrfToken = csrfMeta === null ? '' : csrfMeta.getAttribute('content')
  var locale = document.documentElement.lang === 'fr' ? 'fr-FR' : 'en-GB'
  var MICROS_PER_CENT = BigInt(10000)
  var BPS_TOTAL = BigInt(10000)

  function send(method, url, body) {
    var headers = { accept: 'application/json', 'x-csrf-token': csrfToken }
    var init = { method: method, headers: headers, credentials: 'same-origin' }
    if (body !== undefined) {
      headers['content-type'] = 'application/json'
      init.body = JSON.stringify(body)
    }
    return fetch(url, init).then(function (response) {
      // The session has ended (signed out elsewhere, or expired): to the sign-in page, not an API message.
      if (response.status === 401) {
        window.location.assign('/')
        return new Promise(function () {})
      }
      return response
    })
  }

  function errorMessage(response) {
    return response
      .json()
      .then(function (body) {
        // The refusals a household can act on, said in the page's language, not the API's words: a
        // consent in force already shares the data, the offer was withdrawn meanwhile, or the consent
        // to revoke has ended. Any other is the API's message on the English page, and a general
        // refusal (data-refused) on the others, as the server says it without script.
        var messages = document.getElementById('messages')
        var code = body && body.error ? body.error.code : ''
        var known = { CONSENT_OVERLAP: 'data-conflict', OFFER_WITHDRAWN: 'data-withdrawn', CONFLICT: 'data-ended' }[code]
        if (known !== undefined && messages !== null && messages.hasAttribute(known)) return messages.getAttribute(known)
        if (messages !== null && messages.hasAttribute('data-refused')) return messages.getAttribute('data-refused')
        return body && body.error && typeof body.error.message === 'string' ? body.error.message : String(response.status)
      })
      .catch(function () {
        return String(response.status)
      })
  }

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (whole, name) {
      return Object.prototype.hasOwnProperty.call(values, name) ? values[name] : whole
    })
  }

  // Rounds half to even, like the server (shared/money.ts).
  function divideRoundHalfEven(numerator, denominator) {
    var negative = numerator < BigInt(0)
    var n = negative ? -numerator : numerator
    var q = n / denominator
    var twice = (n % denominator) * BigInt(2)
    if (twice > denominator || (twice === denominator && q % BigInt(2) === BigInt(1))) q += BigInt(1)
    return negative ? -q : q
  }

  // Euros with 2 decimals from micro-euros; Intl lays out an exact decimal string.
  function formatMicros(micros) {
    var cents = divideRoundHalfEven(micros, MICROS_PER_CENT)
    var negative = cents < BigInt(0)
    var digits = (negative ? -cents : cents).toString().padStart(3, '0')
    var decimal = (negative ? '-' : '') + digits.slice(0, -2) + '.' + digits.slice(-2)
    return new Intl.NumberFormat(locale, { style: 'currency', currency: 'EUR', minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(decimal)
  }

  function failedText(message) {
    var messages = document.getElementById('messages')
    return messages === null ? message : fill(messages.getAttribute('data-failed'), { message: message })
  }

  // An error is a role=alert paragraph, empty and hidden until then: shown, it is announced.
  function showError(container, message) {
    var el = container.querySelector('[data-error]')
    if (el === null) return
    el.textContent = failedText(message)
    el.hidden = false
  }

  function hideError(container) {
    var el = container.querySelector('[data-error]')
    if (el !== null) el.hidden = true
  }

  // No meter ticked: the boxes are marked invalid, and their group described by the error, until one is ticked.
  function markMeters(form, invalid) {
    var fieldset = form.querySelector('fieldset')
    var error = form.querySelector('[data-error]')
    if (fieldset !== null && error !== null) {
      if (invalid) fieldset.setAttribute('aria-describedby', error.id)
      else fieldset.removeAttribute('aria-describedby')
    }
    form.querySelectorAll('input[name="meterId"]').forEach(function (box) {
      if (invalid) box.setAttribute('aria-invalid', 'true')
      else box.removeAttribute('aria-invalid')
    })
  }

  // A button disabled while focused loses the focus: given back once enabled, so the keyboard is where it was.
  function enable(button) {
    var hadFocus = document.activeElement === button || document.activeElement === document.body || document.activeElement === null
    button.disabled = false
    if (hadFocus) button.focus()
  }

  // A change through the API: on `okStatus`, on to the page that says it is done; otherwise the refusal is
  // shown (and announced) in `container`, and `button`, disabled meanwhile, is usable again.
  function change(method, url, body, okStatus, doneUrl, container, button) {
    send(method, url, body)
      .then(function (response) {
        if (response.status === okStatus) {
          window.location.assign(doneUrl)
          return
        }
        return errorMessage(response).then(function (message) {
          showError(container, message)
          enable(button)
        })
      })
      .catch(function (err) {
        showError(container, String(err))
        enable(button)
      })
  }

  function updateEstimate(form) {
    var card = form.closest('[data-offer]')
    var output = card === null ? null : card.querySelector('[data-estimate]')
    if (output === null) return
    var datums = BigInt(0)
    form.querySelectorAll('input[name="meterId"]:checked').forEach(function (box) {
      datums += BigInt(box.getAttribute('data-datums'))
    })
    var share = BigInt(output.getAttribute('data-share-per-10000'))
    output.textContent = fill(output.getAttribute('data-template'), { amount: formatMicros(divideRoundHalfEven(share * datums, BPS_TOTAL)) })
  }

  document.querySelectorAll('form[data-grant]').forEach(function (form) {
    form.addEventListener('change', function (event) {
      if (event.target.name !== 'meterId') return
      updateEstimate(form)
      markMeters(form, false)
    })
    form.addEventListener('submit', function (event) {
      event.preventDefault()
      var boxes = form.querySelectorAll('input[name="meterId"]')
      var chosen = []
      boxes.forEach(function (box) {
        if (box.checked) chosen.push(box.value)
      })
      hideError(form)
      if (chosen.length === 0) {
        var messages = document.getElementById('messages')
        markMeters(form, true)
        showError(form, messages === null ? '' : messages.getAttribute('data-no-meter'))
        return
      }
      var body = {
        offerId: form.getAttribute('data-grant'),
        validUntil: form.elements.validUntil.value,
      }
      // An empty choice is "from now on": the moment of the grant, left to the server.
      if (form.elements.dataFrom.value !== '') body.dataFrom = form.elements.dataFrom.value
      // Every meter ticked means "all my meters"; otherwise the ones chosen.
      if (chosen.length < boxes.length) body.meterIds = chosen
      var button = form.querySelector('button[type="submit"]')
      button.disabled = true
      change('POST', '/me/consents', body, 201, '/consents?done=granted', form, button)
    })
  })

  // Revoking asks first, in a modal dialog (opened on Cancel; Escape cancels too), instead of the page
  // the button leads to without script. Confirmed, the dialog stays open until the API answers: a
  // refusal is shown and announced in it, where the focus is.
  var dialog = document.getElementById('revoke-dialog')
  var revoking = null
  var opener = null
  document.querySelectorAll('button[data-revoke]').forEach(function (button) {
    button.addEventListener('click', function (event) {
      if (dialog === null || typeof dialog.showModal !== 'function') return
      event.preventDefault()
      revoking = button.getAttribute('data-revoke')
      opener = button
      var text = document.getElementById('revoke-text')
      text.textContent = fill(text.getAttribute('data-template'), { recipient: button.getAttribute('data-recipient') })
      hideError(dialog)
      dialog.returnValue = ''
      dialog.showModal()
    })
  })
  if (dialog !== null) {
    var confirmButton = document.getElementById('revoke-confirm')
    dialog.querySelector('form').addEventListener('submit', function (event) {
      if (event.submitter !== confirmButton || revoking === null) return
      event.preventDefault()
      if (confirmButton.disabled) return
      confirmButton.disabled = true
      hideError(dialog)
      change('DELETE', '/me/consents/' + encodeURIComponent(revoking), undefined, 204, '/consents?done=revoked', dialog, confirmButton)
    })
    // The close event comes after the dialog has closed, as a task of its own: by then it may have been opened
    // again (a key pressed at once), whose consent is the one to revoke. So `revoking` is left to the next opening.
    dialog.addEventListener('close', function () {
      if (dialog.open) return
      // Back on the button that opened it (browsers differ in where the focus goes otherwise).
      if (opener !== null && document.activeElement !== opener) opener.focus()
    })
  }
})()
