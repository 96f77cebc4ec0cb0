// NOT COMPILED HERE. Illustrative Unreal Engine 5 dedicated-server code; see ../../README.md.
#include "KumiWrappedGameMode.h"

#include "GameFramework/PlayerState.h"
#include "HAL/PlatformMisc.h"
#include "HttpModule.h"
#include "Interfaces/IHttpRequest.h"
#include "Interfaces/IHttpResponse.h"
#include "Kismet/GameplayStatics.h"
#include "Serialization/JsonReader.h"
#include "Serialization/JsonSerializer.h"

void AKumiWrappedGameMode::InitGame(const FString& MapName, const FString& Options, FString& ErrorMessage)
{
	Super::InitGame(MapName, Options, ErrorMessage);
	// Set by `kumi gameserver wrap`; inside the sandbox it is a loopback address only this server reaches.
	AdmitUrl = FPlatformMisc::GetEnvironmentVariable(TEXT("KUMI_ADMIT_URL"));
	if (AdmitUrl.IsEmpty())
	{
		ErrorMessage = TEXT("kumi: KUMI_ADMIT_URL is not set; run this server with `kumi gameserver wrap` or use AKumiGameMode");
	}
}

void AKumiWrappedGameMode::PreLoginAsync(const FString& Options, const FString& Address, const FUniqueNetIdRepl& UniqueId, const FOnPreLoginCompleteDelegate& OnComplete)
{
	// The client traveled with OpenLevel(address, true, "token=<server token>").
	const FString Token = UGameplayStatics::ParseOption(Options, TEXT("token"));
	if (Token.IsEmpty() || AdmitUrl.IsEmpty())
	{
		OnComplete.ExecuteIfBound(TEXT("kumi: no ?token= option; file a ticket and travel with its server token"));
		return;
	}
	TSharedRef<IHttpRequest, ESPMode::ThreadSafe> Req = FHttpModule::Get().CreateRequest();
	Req->SetURL(AdmitUrl);
	Req->SetVerb(TEXT("POST"));
	Req->SetHeader(TEXT("Content-Type"), TEXT("application/json"));
	// A JWT is base64url and dots: nothing in it needs JSON escaping.
	Req->SetContentAsString(FString::Printf(TEXT("{\"token\":\"%s\"}"), *Token));
	Req->SetTimeout(5.0f);
	TWeakObjectPtr<AKumiWrappedGameMode> WeakThis(this);
	Req->OnProcessRequestComplete().BindLambda([WeakThis, Token, Address, OnComplete](FHttpRequestPtr, FHttpResponsePtr Resp, bool bOk)
	{
		if (!WeakThis.IsValid()) { return; }
		if (!bOk || !Resp.IsValid())
		{
			OnComplete.ExecuteIfBound(TEXT("kumi: admission service unreachable"));
			return;
		}
		TSharedPtr<FJsonObject> Json;
		const TSharedRef<TJsonReader<>> Reader = TJsonReaderFactory<>::Create(Resp->GetContentAsString());
		FJsonSerializer::Deserialize(Reader, Json);
		if (Resp->GetResponseCode() != 200 || !Json.IsValid())
		{
			// 403: bad/expired/foreign token; 409: already used or another match. Never retry: the
			// client files a new ticket.
			const FString Why = Json.IsValid() ? Json->GetStringField(TEXT("error")) : Resp->GetContentAsString();
			UE_LOG(LogGameMode, Warning, TEXT("refused %s: %s"), *Address, *Why);
			OnComplete.ExecuteIfBound(TEXT("kumi: ") + Why);
			return;
		}
		const FString PlayerId = Json->GetStringField(TEXT("player_id"));
		WeakThis->Admitted.Add(Token, PlayerId);
		UE_LOG(LogGameMode, Log, TEXT("admitted player=%s session=%s from %s"), *PlayerId, *Json->GetStringField(TEXT("session_id")), *Address);
		OnComplete.ExecuteIfBound(FString()); // empty = admitted
	});
	Req->ProcessRequest();
}

FString AKumiWrappedGameMode::InitNewPlayer(APlayerController* PC, const FUniqueNetIdRepl& UniqueId, const FString& Options, const FString& Portal)
{
	FString PlayerId;
	if (!Admitted.RemoveAndCopyValue(UGameplayStatics::ParseOption(Options, TEXT("token")), PlayerId))
	{
		return TEXT("kumi: not admitted by PreLogin");
	}
	if (PC->PlayerState) { PC->PlayerState->SetPlayerName(PlayerId); }
	return Super::InitNewPlayer(PC, UniqueId, Options, Portal);
}
