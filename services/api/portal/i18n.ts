import { formatEurLocale } from '../../../shared/money.ts'

/**
 * The portal speaks English and French. The language comes from the `lang` query parameter
 * (a switch, then remembered in a cookie), else that cookie, else Accept-Language, else
 * English. Money, dates and energy are laid out by Intl from exact decimal strings: no
 * floating point touches an amount or an energy.
 */

export const LANGUAGES = ['en', 'fr'] as const
export type Language = (typeof LANGUAGES)[number]

export const LANGUAGE_COOKIE_NAME = 'metershare_lang'
/** How long the language choice is remembered. */
export const LANGUAGE_COOKIE_MAX_AGE_S = 365 * 24 * 60 * 60
/** Longest Accept-Language header looked at. */
const ACCEPT_LANGUAGE_LENGTH_MAX = 1_000

export const LOCALE_OF: Readonly<Record<Language, string>> = { en: 'en-GB', fr: 'fr-FR' }

export function isLanguage(value: unknown): value is Language {
  return typeof value === 'string' && (LANGUAGES as readonly string[]).includes(value)
}

/** The best of our languages in an Accept-Language header (by q, then by order); null when none fits. */
export function negotiateLanguage(header: string | undefined): Language | null {
  if (header === undefined || header.length > ACCEPT_LANGUAGE_LENGTH_MAX) return null
  let best: { language: Language; q: number } | null = null
  for (const part of header.split(',')) {
    const [tag, ...params] = part.trim().toLowerCase().split(';')
    const primary = tag!.split('-')[0]!
    if (!isLanguage(primary)) continue
    const qParam = params.map((p) => p.trim()).find((p) => p.startsWith('q='))
    const q = qParam === undefined ? 1 : Number(qParam.slice(2))
    if (!Number.isFinite(q) || q <= 0) continue
    if (best === null || q > best.q) best = { language: primary, q }
  }
  return best?.language ?? null
}

export function chooseLanguage(input: { query: unknown; cookie: string | undefined; acceptLanguage: string | undefined }): Language {
  if (isLanguage(input.query)) return input.query
  if (isLanguage(input.cookie)) return input.cookie
  return negotiateLanguage(input.acceptLanguage) ?? 'en'
}

/** Replaces `{name}` by its value (values are text; the page escapes them). */
export function fill(template: string, values: Readonly<Record<string, string>>): string {
  // French elides "de" before a vowel: "relevé d’octobre", not "relevé de octobre".
  return template
    .replace(/\bde \{(\w+)\}/g, (whole, name: string) => (values[name] !== undefined && /^[aeiouyàâéèêîïôû]/i.test(values[name]) ? `d’{${name}}` : whole))
    .replace(/\{(\w+)\}/g, (whole, name: string) => values[name] ?? whole)
}

export interface Messages {
  appName: string
  skipToContent: string
  mainNav: string
  languageNav: string
  languageNames: Readonly<Record<Language, string>>
  nav: { overview: string; consents: string; accessLog: string; consumption: string; account: string }
  signOut: string
  notFound: string
  badLink: string
  /** A request that failed because the database is away or full (503): nothing was changed. */
  unavailable: { heading: string; detail: string }
  /** A request that failed on our side otherwise (500). */
  failed: { heading: string; detail: string }
  /** A form posted from elsewhere, or without the session's CSRF token. */
  formOrigin: string
  signIn: {
    title: string
    intro: string
    email: string
    password: string
    submit: string
    failed: string
    throttled: string
    /** Refused while as many sign-ins are under way as may still fail. */
    busy: string
    invalid: string
    /** After a password change: every session ended. */
    passwordChanged: string
  }
  account: {
    title: string
    passwordHeading: string
    current: string
    new: string
    confirm: string
    rules: string
    submit: string
    mismatch: string
    wrongCurrent: string
    length: string
  }
  overview: {
    title: string
    lastMonth: string
    seeStatement: string
    noMonths: string
    noEarnings: string
    onlyInProgress: string
    balance: string
    balanceNote: string
    chartTitle: string
    chartDescription: string
    tableCaption: string
    month: string
    earned: string
    paidOut: string
    notPaid: string
    paidWith: string
    inProgress: string
  }
  statement: {
    title: string
    caption: string
    recipient: string
    offer: string
    granularity: string
    data: string
    gross: string
    share: string
    adjustments: string
    total: string
    csv: string
    noLines: string
    openMonth: string
    notSettled: string
    previous: string
    next: string
    legalBasis: string
    otherMonths: string
  }
  consents: {
    title: string
    yours: string
    none: string
    recipient: string
    purpose: string
    granularity: string
    meters: string
    validUntil: string
    dataWindow: string
    dataSince: string
    dataBetween: string
    status: string
    price: string
    action: string
    allMeters: string
    /** A meter the consent covers no more (the household moved out). */
    meterEnded: string
    revoke: string
    revokeLabel: string
    revokeTitle: string
    revokeText: string
    confirmRevoke: string
    cancel: string
    statuses: Readonly<Record<'active' | 'revoked' | 'expired' | 'ended_by_move_out', string>>
    /** When the consent took its status: granted, or ended. */
    statusAt: Readonly<Record<'active' | 'ended', string>>
    /** The purpose of a supplier's legal basis (stored in English, as the API gives it). */
    legalBasisPurpose: string
    legalBasis: string
    /** Why a legal basis has no Revoke button. */
    legalBasisNotRevocable: string
    free: string
    offers: string
    noOffers: string
    offerPrice: string
    pricePerDatum: string
    per1000: string
    yourShare: string
    shareText: string
    /** How the price is shared among those paid. */
    split: string
    splitParts: Readonly<Record<'household' | 'operator' | 'platform', string>>
    estimate: string
    estimateText: string
    chooseMeters: string
    validity: string
    validityMonth: string
    validityMonths: string
    validityYear: string
    validityYears: string
    shareFrom: string
    fromNow: string
    fromToday: string
    fromMonth: string
    fromYear: string
    accept: string
    granted: string
    revoked: string
    noMeter: string
    failed: string
    alreadyShared: string
    /** The offer was withdrawn while the page was open. */
    withdrawn: string
    noMeterChosen: string
    /** A revocation of a consent that has ended meanwhile (expired, or by a move-out). */
    alreadyEnded: string
    /** Any other refusal, on a page whose language is not the API's. */
    refused: string
    alreadyAccepted: string
  }
  accessLog: {
    title: string
    intro: string
    caption: string
    day: string
    recipient: string
    meter: string
    channel: string
    datums: string
    channels: Readonly<Record<'mqtt' | 'http', string>>
    none: string
    from: string
    to: string
    show: string
    next: string
    total: string
  }
  consumption: {
    title: string
    meter: string
    view: string
    viewDay: string
    viewMonth: string
    day: string
    month: string
    show: string
    previous: string
    next: string
    total: string
    chartDay: string
    chartMonth: string
    chartDayGas: string
    chartMonthGas: string
    volume: string
    chartDescription: string
    none: string
    noMeter: string
    time: string
    energy: string
    asTable: string
    commodity: Readonly<Record<'electricity' | 'gas', string>>
  }
  granularities: Readonly<Record<'load_curve' | 'daily' | 'monthly', string>>
}

const EN: Messages = {
  appName: 'Metershare',
  skipToContent: 'Skip to content',
  mainNav: 'Main',
  languageNav: 'Language',
  languageNames: { en: 'English', fr: 'Français' },
  nav: { overview: 'Earnings', consents: 'Consents', accessLog: 'Access log', consumption: 'Consumption', account: 'Account' },
  signOut: 'Sign out',
  notFound: 'This page does not exist.',
  badLink: 'This link does not hold.',
  unavailable: { heading: 'Metershare is unavailable for a moment.', detail: 'Your data cannot be reached just now. Nothing was changed: try again in a minute.' },
  failed: { heading: 'Something went wrong on our side.', detail: 'Try again. If it happens again, tell the operator of your meter.' },
  formOrigin: 'This form was not sent from your portal page: open the page again and send it from there.',
  signIn: {
    title: 'Sign in',
    intro: 'Your household’s portal: what your meter data earns you, who receives it, and your consents.',
    email: 'Email',
    password: 'Password',
    submit: 'Sign in',
    failed: 'This email and password do not match a household.',
    throttled: 'Too many failed attempts. Try again in {minutes} min.',
    busy: 'Too many sign-ins at once from here. Try again in a moment.',
    invalid: 'Enter your email and your password.',
    passwordChanged: 'Your password has been changed and every session signed out. Sign in with the new one.',
  },
  account: {
    title: 'Your account',
    passwordHeading: 'Change your password',
    current: 'Current password',
    new: 'New password',
    confirm: 'New password again',
    rules: '{min} to {max} characters. Every session, this one too, is signed out.',
    submit: 'Change the password',
    mismatch: 'The two new passwords differ.',
    wrongCurrent: 'This is not your current password.',
    length: 'The new password needs {min} to {max} characters.',
  },
  overview: {
    title: 'Your earnings',
    lastMonth: 'Last settled month',
    seeStatement: 'See the statement of {month}',
    noMonths: 'No month has been settled yet: your earnings appear here once the first month is settled.',
    noEarnings: 'No earnings yet: the months settled so far hold none of your data that a recipient paid for.',
    onlyInProgress: 'None of your months is settled yet: what is booked for you so far is in a month still in progress, in the table below.',
    balance: 'Balance carried forward',
    balanceNote: 'Paid out when a month is settled, once it reaches {amount}; what is booked in a month not yet settled waits for that month.',
    chartTitle: 'Earnings by month',
    chartDescription: 'Bar chart of your total for each settled month. The table beside it gives the same figures.',
    tableCaption: 'Earnings and payouts by month',
    month: 'Month',
    earned: 'Earned',
    paidOut: 'Paid out',
    notPaid: 'not yet',
    paidWith: 'in the payout of {month}',
    inProgress: 'in progress',
  },
  statement: {
    title: 'Statement for {month}',
    caption: 'What your data earned in {month}, per recipient and offer',
    recipient: 'Recipient',
    offer: 'Offer',
    granularity: 'Granularity',
    data: 'Data (datums)',
    gross: 'Gross',
    share: 'Your share',
    adjustments: 'Adjustments (corrections of earlier months)',
    total: 'Total',
    csv: 'Download as CSV',
    noLines: 'None of your data was released this month.',
    openMonth: '{month} is not settled yet: its lines come when it closes. Here is what later runs booked in it so far.',
    notSettled: '{month} has not been settled yet.',
    previous: 'Previous statement',
    next: 'Next statement',
    legalBasis: 'Legal basis (free)',
    otherMonths: 'Other statements',
  },
  consents: {
    title: 'Consents',
    yours: 'Your consents',
    none: 'You have not granted any consent yet.',
    recipient: 'Recipient',
    purpose: 'Purpose',
    granularity: 'Granularity',
    meters: 'Meters',
    validUntil: 'Valid until',
    dataWindow: 'Data',
    dataSince: 'from {from}',
    dataBetween: '{from} to {until}',
    status: 'Status',
    price: 'Price per datum',
    action: 'Action',
    allMeters: 'all: {meters}',
    meterEnded: '{meter} (moved out)',
    revoke: 'Revoke',
    revokeLabel: 'Revoke the consent for {recipient}: {purpose}',
    revokeTitle: 'Revoke this consent?',
    revokeText: '{recipient} will receive nothing more under it, from now on.',
    confirmRevoke: 'Revoke',
    cancel: 'Cancel',
    statuses: { active: 'Active', revoked: 'Revoked', expired: 'Expired', ended_by_move_out: 'Ended by a move-out' },
    statusAt: { active: 'granted {at}', ended: 'on {at}' },
    legalBasisPurpose: 'billing of the energy supply',
    legalBasis: 'Legal basis',
    legalBasisNotRevocable: 'Your supplier needs this data by law to bill you: it ends with your supply contract, not here.',
    free: 'free',
    offers: 'Offers you may accept',
    noOffers: 'No offer is open at the moment.',
    offerPrice: 'Price',
    pricePerDatum: '{amount} per datum',
    per1000: '{amount} per 1,000 datums',
    yourShare: 'Your share',
    shareText: '{percent} of the price: {amount} per datum',
    split: 'Price shared',
    splitParts: { household: 'you', operator: 'the meter’s operator', platform: 'Metershare' },
    estimate: 'Estimate',
    estimateText: 'about {amount} a month for the meters chosen (30 days of data)',
    chooseMeters: 'Meters to share',
    validity: 'Valid until',
    validityMonth: '1 month ({date})',
    validityMonths: '{count} months ({date})',
    validityYear: '1 year ({date})',
    validityYears: '{count} years ({date})',
    shareFrom: 'Share data stamped from',
    fromNow: 'now on',
    fromToday: 'the start of today',
    fromMonth: 'the start of this month',
    fromYear: 'twelve months ago',
    accept: 'Accept this offer',
    granted: 'The consent is granted.',
    revoked: 'The consent is revoked: nothing more is sent under it.',
    noMeter: 'You occupy no meter at the moment, so there is nothing to share.',
    failed: 'Not saved: {message}',
    alreadyShared:
      'you already give this recipient this data of one of these meters under a consent in force. Revoke that consent first to grant other terms, or untick the meter.',
    noMeterChosen: 'choose at least one meter.',
    withdrawn: 'this offer has just been withdrawn and takes no new consents. Reload the page to see the offers open now.',
    alreadyEnded: 'this consent has already ended.',
    refused: 'the change was refused. Reload the page and try again.',
    alreadyAccepted: 'You have an active consent for this offer. Data a consent already shares with this recipient cannot be shared twice: accept again only for other meters, or revoke that consent above to choose other terms.',
  },
  accessLog: {
    title: 'Access log',
    intro:
      'Who received how much of your data, per day, recipient, meter and channel: each delivery, live or pulled. Your statements count something else: the data your consents made available to a recipient, which it pays for whether it fetched it or not.',
    caption: 'Datums released from {from} to {to}',
    day: 'Day',
    recipient: 'Recipient',
    meter: 'Meter',
    channel: 'Channel',
    datums: 'Datums',
    channels: { mqtt: 'live (MQTT)', http: 'pulled (HTTP)' },
    none: 'None of your data was released in this period.',
    from: 'From',
    to: 'To',
    show: 'Show',
    next: 'Next page',
    total: 'Total on this page',
  },
  consumption: {
    title: 'Consumption',
    meter: 'Meter',
    view: 'Period',
    viewDay: 'one day, each reading',
    viewMonth: 'one month, day by day',
    day: 'Day',
    month: 'Month',
    show: 'Show',
    previous: 'Previous',
    next: 'Next',
    total: 'Total: {amount}',
    chartDay: 'Energy per interval on {day}',
    chartMonth: 'Energy per day in {month}',
    chartDayGas: 'Gas volume per interval on {day}',
    chartMonthGas: 'Gas volume per day in {month}',
    volume: 'Volume',
    chartDescription: 'Bar chart; the figures are in the table below it.',
    none: 'No data for this period.',
    noMeter: 'You have no meter yet.',
    time: 'Time',
    energy: 'Energy',
    asTable: 'The figures as a table',
    commodity: { electricity: 'electricity', gas: 'gas' },
  },
  granularities: { load_curve: 'Load curve (every reading)', daily: 'Daily totals', monthly: 'Monthly totals' },
}

const FR: Messages = {
  appName: 'Metershare',
  skipToContent: 'Aller au contenu',
  mainNav: 'Navigation principale',
  languageNav: 'Langue',
  languageNames: { en: 'English', fr: 'Français' },
  nav: { overview: 'Gains', consents: 'Consentements', accessLog: 'Journal des accès', consumption: 'Consommation', account: 'Compte' },
  signOut: 'Se déconnecter',
  notFound: 'Cette page n’existe pas.',
  badLink: 'Ce lien n’est pas valable.',
  unavailable: { heading: 'Metershare est momentanément indisponible.', detail: 'Vos données ne sont pas accessibles pour l’instant. Rien n’a été modifié : réessayez dans une minute.' },
  failed: { heading: 'Une erreur s’est produite de notre côté.', detail: 'Réessayez. Si elle se reproduit, prévenez l’exploitant de votre compteur.' },
  formOrigin: 'Ce formulaire n’a pas été envoyé depuis votre page du portail : rouvrez la page et envoyez-le de là.',
  signIn: {
    title: 'Connexion',
    intro: 'Le portail de votre foyer : ce que rapportent les données de votre compteur, qui les reçoit, et vos consentements.',
    email: 'Adresse e-mail',
    password: 'Mot de passe',
    submit: 'Se connecter',
    failed: 'Cette adresse et ce mot de passe ne correspondent à aucun foyer.',
    throttled: 'Trop d’essais manqués. Réessayez dans {minutes} min.',
    busy: 'Trop de connexions à la fois depuis ici. Réessayez dans un instant.',
    invalid: 'Saisissez votre adresse e-mail et votre mot de passe.',
    passwordChanged: 'Votre mot de passe a été changé et toutes les sessions fermées. Connectez-vous avec le nouveau.',
  },
  account: {
    title: 'Votre compte',
    passwordHeading: 'Changer de mot de passe',
    current: 'Mot de passe actuel',
    new: 'Nouveau mot de passe',
    confirm: 'Nouveau mot de passe, à nouveau',
    rules: 'De {min} à {max} caractères. Toutes les sessions, celle-ci comprise, seront fermées.',
    submit: 'Changer le mot de passe',
    mismatch: 'Les deux nouveaux mots de passe diffèrent.',
    wrongCurrent: 'Ce n’est pas votre mot de passe actuel.',
    length: 'Le nouveau mot de passe doit compter de {min} à {max} caractères.',
  },
  overview: {
    title: 'Vos gains',
    lastMonth: 'Dernier mois réglé',
    seeStatement: 'Voir le relevé de {month}',
    noMonths: 'Aucun mois n’a encore été réglé : vos gains apparaîtront ici après le premier règlement.',
    noEarnings: 'Pas encore de gains : les mois réglés jusqu’ici ne contiennent aucune de vos données payée par un destinataire.',
    onlyInProgress: 'Aucun de vos mois n’est encore réglé : ce qui vous est inscrit jusqu’ici l’est dans un mois en cours, dans le tableau ci-dessous.',
    balance: 'Solde reporté',
    balanceNote: 'Versé au règlement d’un mois, dès qu’il atteint {amount} ; ce qui est inscrit dans un mois pas encore réglé attend ce mois.',
    chartTitle: 'Gains par mois',
    chartDescription: 'Histogramme de votre total pour chaque mois réglé. Le tableau à côté donne les mêmes chiffres.',
    tableCaption: 'Gains et versements par mois',
    month: 'Mois',
    earned: 'Gagné',
    paidOut: 'Versé',
    notPaid: 'pas encore',
    paidWith: 'dans le versement de {month}',
    inProgress: 'en cours',
  },
  statement: {
    title: 'Relevé de {month}',
    caption: 'Ce que vos données ont rapporté en {month}, par destinataire et par offre',
    recipient: 'Destinataire',
    offer: 'Offre',
    granularity: 'Granularité',
    data: 'Données (relevés)',
    gross: 'Brut',
    share: 'Votre part',
    adjustments: 'Ajustements (corrections des mois précédents)',
    total: 'Total',
    csv: 'Télécharger en CSV',
    noLines: 'Aucune de vos données n’a été transmise ce mois-ci.',
    openMonth: '{month} n’est pas encore réglé : ses lignes viendront à sa clôture. Voici ce que des calculs ultérieurs y ont déjà inscrit.',
    notSettled: '{month} n’a pas encore été réglé.',
    previous: 'Relevé précédent',
    next: 'Relevé suivant',
    legalBasis: 'Base légale (gratuit)',
    otherMonths: 'Autres relevés',
  },
  consents: {
    title: 'Consentements',
    yours: 'Vos consentements',
    none: 'Vous n’avez encore accordé aucun consentement.',
    recipient: 'Destinataire',
    purpose: 'Finalité',
    granularity: 'Granularité',
    meters: 'Compteurs',
    validUntil: 'Valable jusqu’au',
    dataWindow: 'Données',
    dataSince: 'depuis le {from}',
    dataBetween: 'du {from} au {until}',
    status: 'État',
    price: 'Prix par relevé',
    action: 'Action',
    allMeters: 'tous : {meters}',
    meterEnded: '{meter} (déménagé)',
    revoke: 'Révoquer',
    revokeLabel: 'Révoquer le consentement pour {recipient} : {purpose}',
    revokeTitle: 'Révoquer ce consentement ?',
    revokeText: '{recipient} ne recevra plus rien à ce titre, dès maintenant.',
    confirmRevoke: 'Révoquer',
    cancel: 'Annuler',
    statuses: { active: 'Actif', revoked: 'Révoqué', expired: 'Expiré', ended_by_move_out: 'Clos par un déménagement' },
    statusAt: { active: 'accordé le {at}', ended: 'le {at}' },
    legalBasisPurpose: 'facturation de la fourniture d’énergie',
    legalBasis: 'Base légale',
    legalBasisNotRevocable: 'Votre fournisseur a besoin de ces données par la loi pour vous facturer : elles cessent avec votre contrat de fourniture, pas ici.',
    free: 'gratuit',
    offers: 'Offres que vous pouvez accepter',
    noOffers: 'Aucune offre n’est ouverte pour le moment.',
    offerPrice: 'Prix',
    pricePerDatum: '{amount} par relevé',
    per1000: '{amount} pour 1 000 relevés',
    yourShare: 'Votre part',
    shareText: '{percent} du prix : {amount} par relevé',
    split: 'Partage du prix',
    splitParts: { household: 'vous', operator: 'le gestionnaire du compteur', platform: 'Metershare' },
    estimate: 'Estimation',
    estimateText: 'environ {amount} par mois pour les compteurs choisis (30 jours de données)',
    chooseMeters: 'Compteurs à partager',
    validity: 'Valable jusqu’au',
    validityMonth: '1 mois ({date})',
    validityMonths: '{count} mois ({date})',
    validityYear: '1 an ({date})',
    validityYears: '{count} ans ({date})',
    shareFrom: 'Partager les données datées à partir',
    fromNow: 'de maintenant',
    fromToday: 'du début de la journée',
    fromMonth: 'du début du mois',
    fromYear: 'd’il y a douze mois',
    accept: 'Accepter cette offre',
    granted: 'Le consentement est accordé.',
    revoked: 'Le consentement est révoqué : plus rien n’est transmis à ce titre.',
    noMeter: 'Vous n’occupez aucun compteur en ce moment : rien à partager.',
    failed: 'Non enregistré : {message}',
    alreadyShared:
      'vous donnez déjà ces données d’un de ces compteurs à ce destinataire par un consentement en vigueur. Révoquez-le d’abord pour accorder d’autres conditions, ou décochez le compteur.',
    noMeterChosen: 'choisissez au moins un compteur.',
    withdrawn: 'cette offre vient d’être retirée et n’accepte plus de consentement. Rechargez la page pour voir les offres ouvertes.',
    alreadyEnded: 'ce consentement a déjà pris fin.',
    refused: 'la modification a été refusée. Rechargez la page et réessayez.',
    alreadyAccepted: 'Vous avez un consentement actif pour cette offre. Les données qu’un consentement partage déjà avec ce destinataire ne peuvent pas l’être deux fois : acceptez à nouveau seulement pour d’autres compteurs, ou révoquez ce consentement ci-dessus pour choisir d’autres conditions.',
  },
  accessLog: {
    title: 'Journal des accès',
    intro:
      'Qui a reçu combien de vos données, par jour, destinataire, compteur et canal : chaque envoi, en direct ou à la demande. Vos relevés comptent autre chose : les données que vos consentements ont mises à la disposition d’un destinataire, qu’il paie qu’il les ait lues ou non.',
    caption: 'Relevés transmis du {from} au {to}',
    day: 'Jour',
    recipient: 'Destinataire',
    meter: 'Compteur',
    channel: 'Canal',
    datums: 'Relevés',
    channels: { mqtt: 'en direct (MQTT)', http: 'à la demande (HTTP)' },
    none: 'Aucune de vos données n’a été transmise sur cette période.',
    from: 'Du',
    to: 'Au',
    show: 'Afficher',
    next: 'Page suivante',
    total: 'Total de cette page',
  },
  consumption: {
    title: 'Consommation',
    meter: 'Compteur',
    view: 'Période',
    viewDay: 'un jour, relevé par relevé',
    viewMonth: 'un mois, jour par jour',
    day: 'Jour',
    month: 'Mois',
    show: 'Afficher',
    previous: 'Précédent',
    next: 'Suivant',
    total: 'Total : {amount}',
    chartDay: 'Énergie par intervalle le {day}',
    chartMonth: 'Énergie par jour en {month}',
    chartDayGas: 'Volume de gaz par intervalle le {day}',
    chartMonthGas: 'Volume de gaz par jour en {month}',
    volume: 'Volume',
    chartDescription: 'Histogramme ; les chiffres sont dans le tableau en dessous.',
    none: 'Aucune donnée sur cette période.',
    noMeter: 'Vous n’avez pas encore de compteur.',
    time: 'Heure',
    energy: 'Énergie',
    asTable: 'Les chiffres en tableau',
    commodity: { electricity: 'électricité', gas: 'gaz' },
  },
  granularities: { load_curve: 'Courbe de charge (chaque relevé)', daily: 'Totaux journaliers', monthly: 'Totaux mensuels' },
}

export const MESSAGES: Readonly<Record<Language, Messages>> = { en: EN, fr: FR }

const dateFormats = new Map<string, Intl.DateTimeFormat>()
const numberFormats = new Map<string, Intl.NumberFormat>()

function dateFormat(key: string, locale: string, options: Intl.DateTimeFormatOptions): Intl.DateTimeFormat {
  let f = dateFormats.get(key)
  if (f === undefined) {
    f = new Intl.DateTimeFormat(locale, options)
    dateFormats.set(key, f)
  }
  return f
}

function numberFormat(key: string, locale: string, options: Intl.NumberFormatOptions): Intl.NumberFormat {
  let f = numberFormats.get(key)
  if (f === undefined) {
    f = new Intl.NumberFormat(locale, options)
    numberFormats.set(key, f)
  }
  return f
}

/** Intl's TypeScript types predate exact decimal strings; the runtime formats them exactly. */
function formatDecimal(f: Intl.NumberFormat, decimal: string): string {
  return f.format(decimal as unknown as number)
}

/** Layout of dates, numbers, money and energy in one language. */
export class Formats {
  readonly locale: string

  constructor(readonly language: Language) {
    this.locale = LOCALE_OF[language]
  }

  /** "October 2026" / "octobre 2026". */
  month(month: string): string {
    const [y, m] = month.split('-').map(Number) as [number, number]
    return dateFormat(`month:${this.locale}`, this.locale, { month: 'long', year: 'numeric', timeZone: 'UTC' }).format(Date.UTC(y, m - 1, 1))
  }

  /** "Oct" / "oct." */
  monthShort(month: string): string {
    const [y, m] = month.split('-').map(Number) as [number, number]
    return dateFormat(`monthShort:${this.locale}`, this.locale, { month: 'short', timeZone: 'UTC' }).format(Date.UTC(y, m - 1, 1))
  }

  /** "1 October 2026" / "1 octobre 2026", of a calendar day (YYYY-MM-DD). */
  day(day: string): string {
    const [y, m, d] = day.split('-').map(Number) as [number, number, number]
    return this.withOrdinalFirst(dateFormat(`day:${this.locale}`, this.locale, { day: 'numeric', month: 'long', year: 'numeric', timeZone: 'UTC' }), Date.UTC(y, m - 1, d))
  }

  /** A day of the month alone: "1". */
  dayOfMonth(day: string): string {
    return String(Number(day.slice(8, 10)))
  }

  /** An instant as a date and time in the calendar's zone. */
  dateTime(instant: Date, timeZone: string): string {
    return this.withOrdinalFirst(dateFormat(`dateTime:${this.locale}:${timeZone}`, this.locale, { dateStyle: 'medium', timeStyle: 'short', timeZone }), instant)
  }

  /** An instant as a date in the calendar's zone. */
  date(instant: Date, timeZone: string): string {
    return this.withOrdinalFirst(dateFormat(`date:${this.locale}:${timeZone}`, this.locale, { dateStyle: 'medium', timeZone }), instant)
  }

  /** French writes the first of a month as an ordinal, "1er octobre 2026", which Intl does not. */
  private withOrdinalFirst(f: Intl.DateTimeFormat, at: Date | number): string {
    if (this.language !== 'fr') return f.format(at)
    return f
      .formatToParts(at)
      .map((p) => (p.type === 'day' && p.value === '1' ? '1er' : p.value))
      .join('')
  }

  /** "02:00 (GMT+2)": a time with its offset from UTC, for an hour a day has twice (the clocks going back). */
  timeWithOffset(instant: Date, timeZone: string): string {
    const offset = dateFormat(`offset:${this.locale}:${timeZone}`, this.locale, { timeZoneName: 'shortOffset', timeZone })
      .formatToParts(instant)
      .find((p) => p.type === 'timeZoneName')?.value
    return offset === undefined ? this.time(instant, timeZone) : `${this.time(instant, timeZone)} (${offset})`
  }

  /** "13:30", in the calendar's zone. */
  time(instant: Date, timeZone: string): string {
    return dateFormat(`time:${this.locale}:${timeZone}`, this.locale, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23', timeZone }).format(instant)
  }

  integer(n: number | bigint): string {
    return numberFormat(`int:${this.locale}`, this.locale, { maximumFractionDigits: 0 }).format(n)
  }

  /** Euros with 2 decimals, from micro-euros (rounded half to even). */
  money(micros: bigint): string {
    return formatEurLocale(micros, this.locale)
  }

  /**
   * An exact small amount: `units` of 10^-scale euro, with every significant decimal (at
   * least 2): a price per datum, which whole cents would show as 0.00.
   */
  exactMoney(units: bigint, scale: number): string {
    const f = numberFormat(`exact:${this.locale}:${scale}`, this.locale, {
      style: 'currency',
      currency: 'EUR',
      minimumFractionDigits: 2,
      maximumFractionDigits: scale,
    })
    return formatDecimal(f, scaledDecimal(units, scale))
  }

  /** Basis points as a percentage: 7000 → "70 %" / "70%". */
  percentOfBps(bps: number): string {
    const f = numberFormat(`pct:${this.locale}`, this.locale, { style: 'percent', maximumFractionDigits: 2 })
    return formatDecimal(f, scaledDecimal(BigInt(bps), 4))
  }

  /** Wh as kWh (dm³ as m³) with three decimals, exactly. */
  energy(thousandths: number, unit: 'kWh' | 'm³'): string {
    const f = numberFormat(`energy:${this.locale}`, this.locale, { minimumFractionDigits: 3, maximumFractionDigits: 3 })
    return `${formatDecimal(f, scaledDecimal(BigInt(thousandths), 3))} ${unit}`
  }
}

/** `units` × 10^-scale as a plain decimal string: (1250n, 6) → "0.00125". */
export function scaledDecimal(units: bigint, scale: number): string {
  const negative = units < 0n
  const digits = (negative ? -units : units).toString().padStart(scale + 1, '0')
  const whole = digits.slice(0, digits.length - scale)
  const fraction = scale === 0 ? '' : '.' + digits.slice(digits.length - scale)
  return `${negative ? '-' : ''}${whole}${fraction}`
}
